/* SPDX-License-Identifier: MIT */
/*
 * Logging: one line per event on stderr, prefixed with a UTC timestamp and
 * the level.  Thread-safe (each line is one write(2)).  Never pass key
 * material or client data to these functions.
 */
#ifndef BAL_LOG_H
#define BAL_LOG_H

enum bal_log_level { BAL_LOG_DEBUG, BAL_LOG_INFO, BAL_LOG_WARN, BAL_LOG_ERROR };

/* Messages below @level are dropped.  Default: BAL_LOG_INFO. */
void bal_log_set_level(enum bal_log_level level);

void bal_log(enum bal_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define bal_debug(...) bal_log(BAL_LOG_DEBUG, __VA_ARGS__)
#define bal_info(...) bal_log(BAL_LOG_INFO, __VA_ARGS__)
#define bal_warn(...) bal_log(BAL_LOG_WARN, __VA_ARGS__)
#define bal_err(...) bal_log(BAL_LOG_ERROR, __VA_ARGS__)

#endif
