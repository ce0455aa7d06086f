/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store/tcp_fault.c: a fault-injecting TCP proxy for the store tests: it sits between
 * tally and a real server on loopback and, when the test tells it to, refuses, delays or
 * cuts connections at the moments that matter for exactly-once.
 *
 *   tcp_fault CONTROL_SOCKET TARGET_HOST TARGET_PORT
 *
 * listens on 127.0.0.1 at a free port, prints "port N" on stdout, and forwards every
 * accepted connection to the target. The test sends one-line commands to the Unix socket
 * CONTROL_SOCKET and reads one reply line, "ok cuts=C refused=R accepted=A":
 *
 *   pass                 forward everything (the default; ends delay and refuse)
 *   refuse               close new connections at once (a server that is down)
 *   delay MS             hold every forwarded chunk MS milliseconds (a slow link)
 *   cut-reply PATTERN    after forwarding a client chunk containing PATTERN (e.g. the
 *                        prepared statement's name, or COMMIT), drop the server's reply up
 *                        to and including its ReadyForQuery message, then close both
 *                        sides: the statement ran and committed, the client never hears
 *                        so (the ambiguous case). One shot.
 *   cut-request PATTERN  forward only the first half of the client chunk containing
 *                        PATTERN, then close both sides: the server gets a torn message
 *                        and runs nothing (cut mid-batch). One shot.
 *   drop                 close every open connection now
 *   stats                change nothing
 *   quit                 exit
 *
 * The server-to-client stream is parsed as PostgreSQL messages (type byte, 4-byte length)
 * from the first byte, so clients must not negotiate SSL or GSS encryption through it
 * (sslmode=disable gssencmode=disable). Single-threaded (one poll loop), loopback only,
 * bounded: at most MAX_LINKS connections.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINKS 64
#define CHUNK 65536
#define PATTERN_MAX 64

enum mode { PASS, REFUSE };
enum arm { ARM_NONE, ARM_CUT_REPLY, ARM_CUT_REQUEST };

struct link {
	int client, server;      /* -1 when unused */
	bool dropping_reply;     /* armed cut-reply fired: drop until ReadyForQuery */
	unsigned char header[5]; /* the server message header being read */
	int header_len;
	long body_left;          /* bytes of the current server message body still to come */
	char tail[PATTERN_MAX];  /* the client stream's last bytes, for split patterns */
	int tail_len;
};

static struct link links[MAX_LINKS];
static enum mode mode = PASS;
static int delay_ms;
static enum arm arm = ARM_NONE;
static char pattern[PATTERN_MAX + 1];
static long cuts, refused, accepted;
static struct sockaddr_in target;

static void close_link(struct link *link)
{
	if (link->client >= 0)
		close(link->client);
	if (link->server >= 0)
		close(link->server);
	*link = (struct link){ .client = -1, .server = -1 };
}

static void sleep_ms(int ms)
{
	struct timespec pause = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&pause, &pause) && errno == EINTR)
		;
}

static bool write_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		data += n;
		len -= (size_t)n;
	}
	return true;
}

static void accept_client(int listener)
{
	int client = accept(listener, NULL, NULL), server, one = 1;
	struct link *link = NULL;

	if (client < 0)
		return;
	for (int i = 0; i < MAX_LINKS && !link; i++)
		if (links[i].client < 0)
			link = &links[i];
	if (mode == REFUSE || !link) {
		refused++;
		close(client);
		return;
	}
	server = socket(AF_INET, SOCK_STREAM, 0);
	if (server < 0 || connect(server, (struct sockaddr *)&target, sizeof(target)) != 0) {
		refused++;
		close(client);
		if (server >= 0)
			close(server);
		return;
	}
	setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*link = (struct link){ .client = client, .server = server };
	accepted++;
}

/* Looks for the armed pattern in the client stream, across chunk boundaries. */
static bool pattern_in(struct link *link, const char *data, size_t len)
{
	size_t pattern_len = strlen(pattern);
	char window[PATTERN_MAX * 2];
	bool found = memmem(data, len, pattern, pattern_len) != NULL;
	size_t head = len < PATTERN_MAX ? len : PATTERN_MAX;

	memcpy(window, link->tail, (size_t)link->tail_len);
	memcpy(window + link->tail_len, data, head);
	found = found || memmem(window, (size_t)link->tail_len + head, pattern, pattern_len);
	link->tail_len = (int)(len < PATTERN_MAX - 1 ? len : PATTERN_MAX - 1);
	memcpy(link->tail, data + len - (size_t)link->tail_len, (size_t)link->tail_len);
	return found;
}

static void client_to_server(struct link *link)
{
	char data[CHUNK];
	ssize_t n = recv(link->client, data, sizeof(data), 0);

	if (n <= 0) {
		close_link(link);
		return;
	}
	if (delay_ms)
		sleep_ms(delay_ms);
	if (arm != ARM_NONE && pattern_in(link, data, (size_t)n)) {
		if (arm == ARM_CUT_REQUEST) {
			write_all(link->server, data, (size_t)n / 2);
			arm = ARM_NONE;
			cuts++;
			close_link(link);
			return;
		}
		link->dropping_reply = true;
		arm = ARM_NONE;
	}
	if (!write_all(link->server, data, (size_t)n))
		close_link(link);
}

/* Walks the server's messages in data; returns how many bytes end with a ReadyForQuery
 * ('Z') message, or -1 if none ends in this chunk. */
static long ready_for_query_end(struct link *link, const unsigned char *data, long len)
{
	long at = 0, ready_end = -1;

	while (at < len) {
		if (link->body_left > 0) {
			long take = link->body_left < len - at ? link->body_left : len - at;

			link->body_left -= take;
			at += take;
			if (link->body_left == 0 && link->header[0] == 'Z')
				ready_end = at;
			continue;
		}
		link->header[link->header_len++] = data[at++];
		if (link->header_len == 5) {
			long length = ((long)link->header[1] << 24) | ((long)link->header[2] << 16) |
				      ((long)link->header[3] << 8) | link->header[4];

			link->header_len = 0;
			link->body_left = length - 4;
			if (link->body_left <= 0 && link->header[0] == 'Z')
				ready_end = at;
		}
	}
	return ready_end;
}

static void server_to_client(struct link *link)
{
	unsigned char data[CHUNK];
	ssize_t n = recv(link->server, data, sizeof(data), 0);
	long ready_end;

	if (n <= 0) {
		close_link(link);
		return;
	}
	if (delay_ms)
		sleep_ms(delay_ms);
	ready_end = ready_for_query_end(link, data, n);
	if (link->dropping_reply) {
		if (ready_end >= 0) { /* the reply is complete: the commit happened; cut */
			cuts++;
			close_link(link);
		}
		return;
	}
	if (!write_all(link->client, (const char *)data, (size_t)n))
		close_link(link);
}

static void reply(int fd, const char *status)
{
	char line[128];
	int len = snprintf(line, sizeof(line), "%s cuts=%ld refused=%ld accepted=%ld\n", status,
			   cuts, refused, accepted);

	write_all(fd, line, (size_t)len);
}

/* One command per control connection; returns false on quit. */
static bool handle_control(int control)
{
	char line[PATTERN_MAX + 32] = "";
	int fd = accept(control, NULL, NULL);
	ssize_t n;
	bool go_on = true;

	if (fd < 0)
		return true;
	n = recv(fd, line, sizeof(line) - 1, 0);
	if (n > 0) {
		line[n] = '\0';
		line[strcspn(line, "\r\n")] = '\0';
	}
	if (!strcmp(line, "pass")) {
		mode = PASS;
		delay_ms = 0;
		arm = ARM_NONE;
	} else if (!strcmp(line, "refuse")) {
		mode = REFUSE;
	} else if (!strncmp(line, "delay ", 6)) {
		delay_ms = atoi(line + 6);
	} else if (!strncmp(line, "cut-reply ", 10) && strlen(line + 10) < PATTERN_MAX) {
		snprintf(pattern, sizeof(pattern), "%s", line + 10);
		arm = ARM_CUT_REPLY;
	} else if (!strncmp(line, "cut-request ", 12) && strlen(line + 12) < PATTERN_MAX) {
		snprintf(pattern, sizeof(pattern), "%s", line + 12);
		arm = ARM_CUT_REQUEST;
	} else if (!strcmp(line, "drop")) {
		for (int i = 0; i < MAX_LINKS; i++)
			if (links[i].client >= 0)
				close_link(&links[i]);
	} else if (!strcmp(line, "quit")) {
		go_on = false;
	} else if (strcmp(line, "stats")) {
		reply(fd, "error");
		close(fd);
		return true;
	}
	reply(fd, "ok");
	close(fd);
	return go_on;
}

static int listen_loopback(int *port)
{
	struct sockaddr_in address = { .sin_family = AF_INET };
	socklen_t len = sizeof(address);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof(address)) ||
	    listen(fd, 64) || getsockname(fd, (struct sockaddr *)&address, &len))
		return -1;
	*port = ntohs(address.sin_port);
	return fd;
}

static int listen_control(const char *path)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	if (fd < 0 || strlen(path) >= sizeof(address.sun_path))
		return -1;
	strcpy(address.sun_path, path);
	unlink(path);
	if (bind(fd, (struct sockaddr *)&address, sizeof(address)) || listen(fd, 8))
		return -1;
	return fd;
}

int main(int argc, char **argv)
{
	struct pollfd fds[2 + 2 * MAX_LINKS];
	int listener, control, port = 0;

	if (argc != 4) {
		fprintf(stderr, "usage: tcp_fault CONTROL_SOCKET TARGET_HOST TARGET_PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)atoi(argv[3]));
	if (inet_pton(AF_INET, argv[2], &target.sin_addr) != 1) {
		fprintf(stderr, "tcp_fault: the target must be an IPv4 address\n");
		return 2;
	}
	for (int i = 0; i < MAX_LINKS; i++)
		links[i] = (struct link){ .client = -1, .server = -1 };
	listener = listen_loopback(&port);
	control = listen_control(argv[1]);
	if (listener < 0 || control < 0) {
		perror("tcp_fault: listen");
		return 1;
	}
	printf("port %d\n", port);
	fflush(stdout);
	for (;;) {
		int count = 2;

		fds[0] = (struct pollfd){ .fd = listener, .events = POLLIN };
		fds[1] = (struct pollfd){ .fd = control, .events = POLLIN };
		for (int i = 0; i < MAX_LINKS; i++) {
			fds[2 + 2 * i] = (struct pollfd){ .fd = links[i].client, .events = POLLIN };
			fds[3 + 2 * i] = (struct pollfd){ .fd = links[i].server, .events = POLLIN };
			count = 4 + 2 * i;
		}
		if (poll(fds, (nfds_t)count, 1000) < 0 && errno != EINTR)
			break;
		if (fds[1].revents & POLLIN && !handle_control(control))
			break;
		if (fds[0].revents & POLLIN)
			accept_client(listener);
		for (int i = 0; i < MAX_LINKS; i++) {
			if (links[i].client >= 0 && fds[2 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR))
				client_to_server(&links[i]);
			if (links[i].server >= 0 && fds[3 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR))
				server_to_client(&links[i]);
		}
	}
	unlink(argv[1]);
	return 0;
}
