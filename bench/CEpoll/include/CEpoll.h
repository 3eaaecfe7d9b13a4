// epoll and batched UDP for the bench tools: Swift's Glibc module exports neither <sys/epoll.h> nor
// recvmmsg/sendmmsg (which need _GNU_SOURCE).
#pragma once
#include <sys/epoll.h>
#include <netinet/in.h>

/// Reads up to `count` (at most 64) datagrams without blocking into `buffers` (`count` slots of `slot`
/// bytes); fills `from` and `lengths`. Returns how many were read, or -1 with errno set.
int cepoll_recv_batch(int fd, unsigned char *buffers, int slot, int count, struct sockaddr_in *from, int *lengths);

/// Sends `count` (at most 64) datagrams from `buffers` (slots of `slot` bytes, `lengths[i]` used of
/// each) to `to[i]`, or all to `to[0]` when `same_destination`. Returns how many were sent, or -1.
int cepoll_send_batch(int fd, unsigned char *buffers, int slot, const int *lengths, const struct sockaddr_in *to,
                      int same_destination, int count);
