/* test_io.h - file reading shared by the test programs and the bench tools (test.h
 * includes it; a program without the harness includes it alone). */
#ifndef LLM_TEST_IO_H
#define LLM_TEST_IO_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A file of the source tree, rel a path from its root (e.g. "tests/data/x.bin"), read as
 * test_read_file reads it from the first place it opens in: under $LLM_SOURCE_ROOT when
 * that is set; from the current directory (meson test runs there from the source root);
 * from the root that self, the calling source file's __FILE__, names (meson passes the
 * compiler a path such as ../tests/unit/test_x.c, relative to the build directory: the
 * root is what comes before its last "tests/" component). NULL if none opens. */
static inline char *test_read_source_at(const char *rel, const char *self, size_t *n)
{
    char path[4096];
    const char *env = getenv("LLM_SOURCE_ROOT");
    char *b = NULL;
    if (env && *env) {
        snprintf(path, sizeof path, "%s/%s", env, rel);
        b = test_read_file(path, n);
    }
    if (!b)
        b = test_read_file(rel, n);
    const char *root_end = NULL;
    for (const char *t = self ? strstr(self, "tests/") : NULL; t; t = strstr(t + 1, "tests/"))
        if (t == self || t[-1] == '/')
            root_end = t;
    if (!b && root_end) {
        snprintf(path, sizeof path, "%.*s%s", (int)(root_end - self), self, rel);
        b = test_read_file(path, n);
    }
    return b;
}
#define test_read_source(rel, n) test_read_source_at((rel), __FILE__, (n))

#endif
