/* SPDX-License-Identifier: MIT */
/*
 * The unit tests' tiny harness: CHECK and CHECK_EQ count every check in
 * `checks` and end the program with a FAIL line (file, line, expression)
 * on the first one that does not hold.  Safe from several threads.
 */
#ifndef BAL_TEST_CHECK_H
#define BAL_TEST_CHECK_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static atomic_uint checks;

#define CHECK(cond)                                                                  \
	do {                                                                         \
		checks++;                                                            \
		if (!(cond)) {                                                       \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                     \
		}                                                                    \
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

#endif
