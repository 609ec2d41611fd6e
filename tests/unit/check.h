/* SPDX-License-Identifier: MIT */
/*
 * The unit tests' tiny harness: CHECK, CHECK_EQ and CHECK_RC count every check in
 * `checks` and end the program with a FAIL line (file, line, expression)
 * on the first one that does not hold.  Safe from several threads.
 */
#ifndef BAL_TEST_CHECK_H
#define BAL_TEST_CHECK_H

#include <ftw.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_uint checks;

#define CHECK(cond)                                                                  \
	do {                                                                         \
		checks++;                                                            \
		if (!(cond)) {                                                       \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                     \
		}                                                                    \
	} while (0)

/* A call returning 0 or -errno gave @want; the errno's text on failure. */
#define CHECK_RC(expr, want)                                                          \
	do {                                                                          \
		int rc_ = (expr);                                                     \
		checks++;                                                             \
		if (rc_ != (want)) {                                                  \
			fprintf(stderr, "FAIL %s:%d: %s = %d (%s), want %d\n", __FILE__, \
				__LINE__, #expr, rc_, strerror(rc_ < 0 ? -rc_ : 0), want); \
			exit(1);                                                      \
		}                                                                     \
	} while (0)

#define CHECK_EQ(a, b)                                                              \
	do {                                                                        \
		long long a_ = (long long)(a), b_ = (long long)(b);                 \
		checks++;                                                           \
		if (a_ != b_) {                                                     \
			fprintf(stderr, "FAIL %s:%d: %s == %lld, expected %s == %lld\n", \
				__FILE__, __LINE__, #a, a_, #b, b_);                \
			exit(1);                                                    \
		}                                                                   \
	} while (0)

static inline int check_rm_one(const char *path, const struct stat *sb, int flag,
			       struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Remove the scratch tree @path (a test's temporary directory). */
static inline void check_rmtree(const char *path)
{
	nftw(path, check_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
