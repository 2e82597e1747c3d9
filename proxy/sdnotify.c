/* sdnotify.c - see sdnotify.h */
#include "proxy/sdnotify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sd_notify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	socklen_t len;
	size_t plen;
	int fd, rc;

	if (path == NULL || path[0] == '\0')
		return 0;
	plen = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(sun.sun_path))
		return -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, plen);
	if (path[0] == '@')
		sun.sun_path[0] = '\0'; /* Linux abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	rc = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
		    (struct sockaddr *)&sun, len) < 0
		     ? -1
		     : 0;
	close(fd);
	return rc;
}

static int parse_uint(const char *s, unsigned long *v)
{
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	*v = strtoul(s, &end, 10);
	return errno != 0 || *end != '\0' ? -1 : 0;
}

int sd_listen_fds_take(pid_t pid, struct sd_listen_fd *fds, size_t max)
{
	const char *names = getenv("LISTEN_FDNAMES");
	unsigned long n, lpid;
	int rc = 0;

	if (getenv("LISTEN_FDS") == NULL)
		return 0;
	if (parse_uint(getenv("LISTEN_PID"), &lpid) < 0 ||
	    parse_uint(getenv("LISTEN_FDS"), &n) < 0) {
		rc = -1;
		goto out;
	}
	if ((pid_t)lpid != pid)
		goto out; /* meant for another process */
	if (n > max || n > SD_LISTEN_FDS_MAX) {
		rc = -1;
		goto out;
	}
	for (unsigned long i = 0; i < n; i++) {
		fds[i].fd = SD_LISTEN_FDS_START + (int)i;
		fds[i].name[0] = '\0';
		fcntl(fds[i].fd, F_SETFD, FD_CLOEXEC);
	}
	/* Names are colon-separated, in fd order. */
	for (unsigned long i = 0; names != NULL && i < n; i++) {
		const char *colon = strchr(names, ':');
		size_t len = colon ? (size_t)(colon - names) : strlen(names);

		if (len >= sizeof(fds[i].name))
			len = sizeof(fds[i].name) - 1;
		memcpy(fds[i].name, names, len);
		fds[i].name[len] = '\0';
		names = colon ? colon + 1 : NULL;
	}
	rc = (int)n;
out:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return rc;
}
