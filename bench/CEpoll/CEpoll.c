// Empty: the target only exports <sys/epoll.h> (include/CEpoll.h) to Swift.
#include "CEpoll.h"
