/* main.c — pdsmove entry point: dispatches to the cmd_* functions in src/cli/. */
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) { puts("usage: pdsmove <command>"); return 0; }
    return 2;
}
