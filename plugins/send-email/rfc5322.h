/*
 * rfc5322.h - an email as an Internet message (RFC 5322 with MIME), the
 * same for every transport.
 *
 * Lines end in CRLF. Headers: From, To, Subject (RFC 2047 encoded when not
 * plain ASCII), Date, Message-ID <id@domain of From>, MIME-Version. Bodies
 * are UTF-8, quoted-printable; with both text and html the message is
 * multipart/alternative.
 */
#ifndef SEND_EMAIL_RFC5322_H
#define SEND_EMAIL_RFC5322_H

#include <stddef.h>
#include <time.h>

#include "transport.h"

/* The message of e, dated `now`, as a new string. NULL with the reason in err
 * (a header with a line break, no address in To, out of memory). */
char *rfc5322_compose(const email *e, time_t now, char *err, size_t errlen);

/*
 * The addresses of an address list ("Ann <ann@example.com>, bob@example.com"):
 * each() gets every addr-spec ("ann@example.com") in order and returns 0 to go
 * on. Returns how many there were, or -1 with the reason in err (an entry
 * that is no address, or out of memory).
 */
int rfc5322_addresses(const char *list, int (*each)(void *arg, const char *addr), void *arg,
                      char *err, size_t errlen);

#endif /* SEND_EMAIL_RFC5322_H */
