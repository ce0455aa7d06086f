/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store/http_fault.c: a fault-injecting HTTP/1.1 proxy for the DynamoDB tests
 * (tests/store/dynamodb.sh). It listens on a loopback port, forwards each request to the
 * upstream server (dynalite) over a keep-alive connection, and on command answers some
 * requests itself instead:
 *
 *   throttle  400 {"__type": "...#ThrottlingException"}      (not forwarded)
 *   pte       400 ProvisionedThroughputExceededException       (not forwarded)
 *   e500      500 InternalServerError                          (not forwarded)
 *   e503      503 ServiceUnavailable                           (not forwarded)
 *   hang      holds the request, unanswered, for hang_ms, then closes (not forwarded)
 *   denied    400 AccessDeniedException, invalid 400 ValidationException (not forwarded;
 *             only by "next": permanent errors the client must report, never retry)
 *   drop      forwards the request, reads dynalite's answer, closes the connection without
 *             sending it: the write happened, the client cannot know (the ambiguous case)
 *
 * Control: one line per TCP connection to the control port:
 *   "rates T P E500 E503 HANG DROP"  per-mille chances for each fault on every request
 *   "next KIND N [SKIP]"             after SKIP requests (default 0) pass, the next N get
 *                                    fault KIND (before the rates)
 *   "hang_ms N"                      how long a hang lasts (default 3000)
 *   "clear"                          no faults
 *   "stats"                          replies "requests R faults F dropped D"
 * Every command replies one line ("ok" or the stats).
 *
 * Usage: http_fault UPSTREAM_PORT PORT_FILE: writes "PROXY_PORT CONTROL_PORT\n" to
 * PORT_FILE once both listen. Runs until SIGTERM. One thread per client connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum fault { PASS, THROTTLE, PTE, E500, E503, HANG, DROP, DENIED, INVALID, FAULT_KINDS };
static const char *const fault_names[FAULT_KINDS] = {
	"pass", "throttle", "pte", "e500", "e503", "hang", "drop", "denied", "invalid",
};
#define RATED_KINDS 7 /* the kinds "rates" sets (DENIED and INVALID only come by "next") */

static pthread_mutex_t control_lock = PTHREAD_MUTEX_INITIALIZER;
static int rates[FAULT_KINDS];   /* per mille, guarded by control_lock */
static enum fault next_kind;     /* guarded by control_lock */
static long next_left;           /* guarded by control_lock */
static long next_skip;           /* requests that pass before next_left starts; same lock */
static int hang_ms = 3000;       /* guarded by control_lock */
static atomic_long requests, faults, dropped;
static int upstream_port;

static enum fault choose_fault(unsigned *seed)
{
	pthread_mutex_lock(&control_lock);
	enum fault f = PASS;
	if (next_skip > 0) {
		next_skip--;
	} else if (next_left > 0) {
		next_left--;
		f = next_kind;
	} else {
		int roll = rand_r(seed) % 1000, acc = 0;
		for (int k = 1; k < RATED_KINDS && f == PASS; k++) {
			acc += rates[k];
			if (roll < acc)
				f = (enum fault)k;
		}
	}
	pthread_mutex_unlock(&control_lock);
	return f;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A growing buffer of what has been read from one socket. */
struct inbuf {
	char *data;
	size_t len, cap;
};

static int fill(int fd, struct inbuf *b)
{
	if (b->len + 4096 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16384;
		char *d = realloc(b->data, cap);
		if (!d)
			return -1;
		b->data = d;
		b->cap = cap;
	}
	ssize_t n;
	do
		n = recv(fd, b->data + b->len, b->cap - b->len - 1, 0);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return -1;
	b->len += (size_t)n;
	b->data[b->len] = '\0';
	return 0;
}

/* Reads one whole HTTP message (headers + Content-Length body) into b; returns its length,
 * or 0 on EOF/error. */
static size_t read_message(int fd, struct inbuf *b)
{
	for (;;) {
		char *end = b->len ? strstr(b->data, "\r\n\r\n") : NULL;
		if (end) {
			size_t head = (size_t)(end - b->data) + 4, body = 0;
			for (char *line = strstr(b->data, "\r\n"); line && line < end;
			     line = strstr(line + 2, "\r\n"))
				if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
					body = strtoul(line + 17, NULL, 10);
			while (b->len < head + body)
				if (fill(fd, b))
					return 0;
			return head + body;
		}
		if (fill(fd, b))
			return 0;
	}
}

static void consume(struct inbuf *b, size_t n)
{
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	if (b->data)
		b->data[b->len] = '\0';
}

static int connect_upstream(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)upstream_port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		return fd;
	}
	if (fd >= 0)
		close(fd);
	return -1;
}

static void answer_error(int client, enum fault f)
{
	static const struct { int status; const char *reason, *type, *message; } e[] = {
		[THROTTLE] = {400, "Bad Request", "com.amazonaws.dynamodb.v20120810#ThrottlingException",
			      "Rate of requests exceeds the allowed throughput."},
		[PTE] = {400, "Bad Request",
			 "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
			 "The level of configured provisioned throughput for the table was exceeded."},
		[E500] = {500, "Internal Server Error", "com.amazon.coral.service#InternalFailure",
			  "The request processing has failed because of an unknown error."},
		[E503] = {503, "Service Unavailable", "com.amazon.coral.service#ServiceUnavailableException",
			  "Service unavailable"},
		[DENIED] = {400, "Bad Request", "com.amazon.coral.service#AccessDeniedException",
			    "User is not authorized to perform: dynamodb:GetItem"},
		[INVALID] = {400, "Bad Request", "com.amazon.coral.validate#ValidationException",
			     "One or more parameter values were invalid"},
	};
	char body[256], head[256];
	int blen = snprintf(body, sizeof(body), "{\"__type\":\"%s\",\"message\":\"%s\"}", e[f].type,
			    e[f].message);
	int hlen = snprintf(head, sizeof(head),
			    "HTTP/1.1 %d %s\r\nContent-Type: application/x-amz-json-1.0\r\n"
			    "Content-Length: %d\r\n\r\n", e[f].status, e[f].reason, blen);
	write_all(client, head, (size_t)hlen);
	write_all(client, body, (size_t)blen);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Forwards one request; returns the response length in *up_buf, or 0 on failure. A
 * keep-alive connection the server closed while idle fails before any byte of an answer:
 * the request then goes once more on a fresh connection. */
static size_t forward(int *upstream, const char *request, size_t len, struct inbuf *up_buf)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		bool fresh = *upstream < 0;
		if (fresh)
			*upstream = connect_upstream();
		if (*upstream < 0)
			return 0;
		size_t n = write_all(*upstream, request, len) == 0 ? read_message(*upstream, up_buf) : 0;
		if (n)
			return n;
		bool nothing_read = up_buf->len == 0;
		close(*upstream);
		*upstream = -1;
		up_buf->len = 0;
		if (fresh || !nothing_read)
			return 0;
	}
	return 0;
}

static void *serve_client(void *arg)
{
	int client = (int)(intptr_t)arg, upstream = -1;
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)client * 2654435761u;
	struct inbuf in = {0}, up = {0};
	for (;;) {
		size_t n = read_message(client, &in);
		if (!n)
			break;
		atomic_fetch_add(&requests, 1);
		enum fault f = choose_fault(&seed);
		if (f != PASS)
			atomic_fetch_add(&faults, 1);
		if (f == HANG) {
			pthread_mutex_lock(&control_lock);
			int ms = hang_ms;
			pthread_mutex_unlock(&control_lock);
			sleep_ms(ms);
			break;
		}
		if (f != PASS && f != DROP) {
			answer_error(client, f);
			consume(&in, n);
			continue;
		}
		size_t m = forward(&upstream, in.data, n, &up);
		consume(&in, n);
		if (!m)
			break; /* upstream down: the client sees the connection close */
		if (f == DROP) {
			atomic_fetch_add(&dropped, 1);
			break;
		}
		if (write_all(client, up.data, m))
			break;
		consume(&up, m);
	}
	if (upstream >= 0)
		close(upstream);
	close(client);
	free(in.data);
	free(up.data);
	return NULL;
}

static void control_command(int fd)
{
	char line[256] = {0};
	size_t len = 0;
	while (len < sizeof(line) - 1 && !memchr(line, '\n', len)) {
		ssize_t n = recv(fd, line + len, sizeof(line) - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	char reply[128] = "ok\n", kind[32];
	int r[6];
	long count;
	pthread_mutex_lock(&control_lock);
	if (sscanf(line, "rates %d %d %d %d %d %d", &r[0], &r[1], &r[2], &r[3], &r[4], &r[5]) == 6) {
		for (int k = 0; k < 6; k++)
			rates[k + 1] = r[k];
	} else if (sscanf(line, "next %31s %ld", kind, &count) == 2) {
		next_left = 0;
		next_skip = 0;
		sscanf(line, "next %*s %*d %ld", &next_skip);
		for (int k = 0; k < FAULT_KINDS; k++)
			if (strcmp(kind, fault_names[k]) == 0) {
				next_kind = (enum fault)k;
				next_left = count;
			}
	} else if (sscanf(line, "hang_ms %d", &r[0]) == 1) {
		hang_ms = r[0];
	} else if (strncmp(line, "clear", 5) == 0) {
		memset(rates, 0, sizeof(rates));
		next_left = 0;
	} else if (strncmp(line, "stats", 5) == 0) {
		snprintf(reply, sizeof(reply), "requests %ld faults %ld dropped %ld\n",
			 atomic_load(&requests), atomic_load(&faults), atomic_load(&dropped));
	} else {
		snprintf(reply, sizeof(reply), "error\n");
	}
	pthread_mutex_unlock(&control_lock);
	write_all(fd, reply, strlen(reply));
}

static void *control_loop(void *arg)
{
	int listener = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept(listener, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		control_command(fd);
		close(fd);
	}
}

static int listen_loopback(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 128) ||
	    getsockname(fd, (struct sockaddr *)&a, &alen))
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s UPSTREAM_PORT PORT_FILE\n", argv[0]);
		return 2;
	}
	upstream_port = atoi(argv[1]);
	signal(SIGPIPE, SIG_IGN);
	int proxy_port, control_port;
	int proxy = listen_loopback(&proxy_port), control = listen_loopback(&control_port);
	if (proxy < 0 || control < 0) {
		perror("http_fault: listen");
		return 1;
	}
	pthread_t t;
	if (pthread_create(&t, NULL, control_loop, (void *)(intptr_t)control)) {
		fprintf(stderr, "http_fault: no thread\n");
		return 1;
	}
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[2]);
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "%d %d\n", proxy_port, control_port) < 0 || fclose(f) ||
	    rename(tmp, argv[2])) {
		perror("http_fault: port file");
		return 1;
	}
	for (;;) {
		int client = accept(proxy, NULL, NULL);
		if (client < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("http_fault: accept");
			return 1;
		}
		int one = 1;
		setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, serve_client, (void *)(intptr_t)client))
			close(client);
		pthread_attr_destroy(&attr);
	}
}
