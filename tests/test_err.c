#include <criterion/criterion.h>
#include "pdsmove/err.h"
Test(err, set_and_wrap) {
    err_t e; err_clear(&e);
    cr_assert_eq(err_set(&e, ERR_INVALID, "bad %s", "thing"), ERR_INVALID);
    err_wrap(&e, "reading %s", "x.car");
    cr_assert_str_eq(e.msg, "reading x.car: bad thing");
}
