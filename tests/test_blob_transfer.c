/* test_blob_transfer.c — what the blob loop's module says before a move onto a PDS with rate
 * limits (the loops themselves run against the reference PDS in tests/integration). */
#include <criterion/criterion.h>
#include <string.h>

#include "pdsmove/blob_transfer.h"

Test(blob_transfer, the_forecast_counts_the_pauses_of_the_daily_upload_limit) {
    char s[400];
    blob_upload_forecast(1050, false, s, sizeof s);
    cr_assert_str_eq(s, "the new PDS enforces rate limits: 1,050 blobs at 1000 uploads a day from this address means the move "
                        "pauses once, for up to 24 hours, unless you give --new-pds-ratelimit-bypass-key-file");
    blob_upload_forecast(2500, false, s, sizeof s);
    cr_assert(strstr(s, "2,500 blobs") && strstr(s, "pauses twice, for up to 24 hours each"), "%s", s);
    blob_upload_forecast(1234567, true, s, sizeof s);
    cr_assert(strstr(s, "1,234,567 blobs") && strstr(s, "waits 1234 times") && !strstr(s, "unless"), "%s", s);
    blob_upload_forecast(1000, false, s, sizeof s);
    cr_assert(strstr(s, "the 1,000 blobs fit in its 1000 uploads a day"), "exactly the limit needs no pause: %s", s);
    blob_upload_forecast(-1, false, s, sizeof s);
    cr_assert(strstr(s, "if it is like the reference PDS") && strstr(s, "--new-pds-ratelimit-bypass-key-file"), "%s", s);
}
