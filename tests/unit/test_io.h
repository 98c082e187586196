/* test_io.h - file reading shared by the test programs and the bench tools (test.h
 * includes it; a program without the harness includes it alone). */
#ifndef LLM_TEST_IO_H
#define LLM_TEST_IO_H

#include <stdio.h>
#include <stdlib.h>

/* A whole file, NUL-terminated (malloc'd; NULL if it cannot be opened); *n gets its length
 * when n is not NULL. */
static inline char *test_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    const long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = len >= 0 ? malloc((size_t)len + 1) : NULL;
    const size_t got = b ? fread(b, 1, (size_t)len, f) : 0;
    fclose(f);
    if (b)
        b[got] = '\0';
    if (n)
        *n = got;
    return b;
}

#endif
