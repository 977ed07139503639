/* trace_explain: the telephone picture of each call, one sentence per event, in English
 * or in the seed's Chinese, from a table with one entry per call; the event's values
 * (call, address, option, flags, phase), never its formatted text, choose the sentence. */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "sockflow/err.h"
#include "trace_int.h"

/* The sentence in the cursor's language; both are printf formats with the same
 * arguments, and the compiler checks both. */
#define L(o, en, zh) ((o)->lang == SF_LANG_ZH ? (zh) : (en))

static int
udp(const sf_trace_event *ev)
{
    return ev->proto && strcmp(ev->proto, "udp") == 0;
}

static int
tcp(const sf_trace_event *ev)
{
    return ev->proto && strcmp(ev->proto, "tcp") == 0;
}

static const char *
st(const sf_trace_event *ev)
{
    return sf_tcp_state_name(ev->tcp_state);
}

/* The address the call concerns, else the peer's: a sendto() on a connected socket. */
static const char *
addr_or_peer(const sf_trace_event *ev, char *buf, size_t len)
{
    if (ev->addr)
        return sf_addr_format(ev->addr, buf, len);
    return ev->peer ? ev->peer : "-";
}

/* ---- errors every call shares ---- */

static int
explain_common_error(sf__cursor *o, const sf_trace_event *ev, const char *call)
{
    switch (ev->err) {
    case EAGAIN:
        sf__put(o, L(o, "%s(): not ready, nothing to do yet (EAGAIN): the socket is"
                     " nonblocking, so the call returns at once instead of sleeping.",
                     "%s()：还没有就绪（EAGAIN）：套接字是非阻塞的，所以调用立即返回，"
                     "而不是休眠等待。"), call);
        return 1;
    case ETIMEDOUT:
        sf__put(o, L(o, "%s(): the call was never answered (ETIMEDOUT).",
                     "%s()：电话一直没有人接（ETIMEDOUT）。"), call);
        return 1;
    case ECONNRESET:
        sf__put(o, L(o, "%s(): the other side slammed the phone down (ECONNRESET: a reset,"
                     " not a goodbye).", "%s()：对方猛地摔下了电话（ECONNRESET：是复位，"
                     "不是正常的告别）。"), call);
        return 1;
    case EPIPE:
        sf__put(o, L(o, "%s(): the other side has hung up; talking into a dead line fails"
                     " (EPIPE).", "%s()：对方已经挂断了；对着断掉的线路说话会失败（EPIPE）。"),
                call);
        return 1;
    case EADDRINUSE:
        sf__put(o, L(o, "%s(): that number is taken (EADDRINUSE): another phone already has"
                     " it.", "%s()：这个号码已被占用（EADDRINUSE）：另一部手机已经有了它。"),
                call);
        return 1;
    case EACCES:
        sf__put(o, L(o, "%s(): not allowed (EACCES): numbers below 1024 need privilege.",
                     "%s()：不允许（EACCES）：1024 以下的号码需要特权。"), call);
        return 1;
    case EOPNOTSUPP:
        sf__put(o, L(o, "%s(): not for this kind of socket (EOPNOTSUPP): listen() and"
                     " accept() are for connection-oriented sockets (SOCK_STREAM); UDP sets"
                     " up no call, so there is nothing to answer.",
                     "%s()：这种套接字不支持（EOPNOTSUPP）：listen() 和 accept() 用于面向"
                     "连接的套接字（SOCK_STREAM）；UDP 是无连接的，没有电话可以接听。"), call);
        return 1;
    default:
        return 0;
    }
}

static void
explain_error(sf__cursor *o, const sf_trace_event *ev)
{
    /* connect-done is the end of a connect(): poll, then SO_ERROR */
    const char *call = ev->call == SF_CALL_CONNECT_DONE ? "connect" : sf_call_name(ev->call);

    if (ev->err == ECONNREFUSED && udp(ev))
        sf__put(o, L(o, "%s(): no mailbox at that address (ECONNREFUSED): the other host"
                     " answered a letter with an ICMP port-unreachable message (UDP has no"
                     " reset), and the kernel reports it on this connected socket.",
                     "%s()：那个地址没有信箱（ECONNREFUSED）：对方主机用一个 ICMP 端口不可达"
                     "报文回应了寄去的信（UDP 没有复位），内核把它报告在这个已连接的套接字上。"),
                call);
    else if (ev->err == ECONNREFUSED)
        sf__put(o, L(o, "%s(): nobody answers at that number (ECONNREFUSED): no phone is"
                     " switched on there, and the kernel at the other end said so with a"
                     " reset.", "%s()：这个号码没有人接听（ECONNREFUSED）：那里没有开机的手机，"
                     "对方的内核用一个复位（RST）告诉了你。"), call);
    else if (!explain_common_error(o, ev, call))
        sf__put(o, L(o, "%s() failed: %s (%s).", "%s() 失败：%s（%s）。"), call,
                strerror(ev->err), sf_errname(-ev->err));
}

/* ---- one function per call ---- */

static void
explain_socket(sf__cursor *o, const sf_trace_event *ev)
{
    if (udp(ev))
        sf__put(o, L(o, "socket(): you have a mailbox for letters (UDP, descriptor %ld): no"
                     " call is ever set up, each datagram travels alone with a return"
                     " address.", "socket()：你有了一个收信的信箱（UDP，描述符 %ld）：不建立"
                     "通话，每个数据报带着回信地址独自传递。"), ev->result);
    else
        sf__put(o, L(o, "socket(): you have a phone (descriptor %ld). It has no number yet"
                     " and cannot ring (%s).", "socket()：你有了一部手机（描述符 %ld）。它还"
                     "没有电话号码，也不能响铃（%s）。"), ev->result, st(ev));
}

/* What an option means in the picture; options not listed get none. */
static const struct {
    int level, name;
    const char *why, *why_zh;
} options[] = {
    { SOL_SOCKET, SO_REUSEADDR, ": a restarted server may take its number back at once,"
      " while calls of the last run still linger in TIME_WAIT.",
      "：重启的服务器可以立即拿回它的号码，即使上次运行的通话还停留在 TIME_WAIT。" },
    { SOL_SOCKET, SO_REUSEPORT, ": several phones may share one number, and the kernel"
      " spreads the callers among them.", "：几部手机可以共用一个号码，内核把来电分给它们。" },
    { IPPROTO_IPV6, IPV6_V6ONLY, ": this number answers IPv6 callers only; IPv4 gets a"
      " phone of its own.", "：这个号码只接 IPv6 的来电；IPv4 另用一部手机。" },
};

static void
explain_setsockopt(sf__cursor *o, const sf_trace_event *ev)
{
    const char *why = L(o, ".", "。");

    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
        if (options[i].level == ev->opt_level && options[i].name == ev->opt_name)
            why = L(o, options[i].why, options[i].why_zh);
    if (o->lang == SF_LANG_ZH)
        sf__put(o, "setsockopt(%s)：在%s得到%s之前做的一项设置%s", ev->args,
                udp(ev) ? "信箱" : "手机", udp(ev) ? "地址" : "号码", why);
    else
        sf__put(o, "setsockopt(%s): a setting on the %s before it gets its %s%s", ev->args,
                udp(ev) ? "mailbox" : "phone", udp(ev) ? "address" : "number", why);
}

static void
explain_bind(sf__cursor *o, const sf_trace_event *ev)
{
    char a[SF_ADDR_STRLEN];
    const char *where = ev->local ? ev->local
                      : ev->addr ? sf_addr_format(ev->addr, a, sizeof(a)) : ev->args;

    if (udp(ev))
        sf__put(o, L(o, "bind(): the mailbox gets its address, %s: letters sent there land"
                     " here.", "bind()：信箱有了地址 %s：寄到这里的信会落在这里。"), where);
    else
        sf__put(o, L(o, "bind(): the phone gets its number, %s, like a SIM card put in. It"
                     " is still switched off (%s).", "bind()：激活SIM卡，手机有了一个电话号码"
                     "：%s。它还没有开机（%s）。"), where, st(ev));
}

static void
explain_listen(sf__cursor *o, const sf_trace_event *ev)
{
    sf__put(o, L(o, "listen(): the phone is switched on and can ring (%s). From now on a"
                 " switchboard in the kernel answers callers by itself (the three-way"
                 " handshake) and puts each answered call on hold for accept() (%s).",
                 "listen()：开机或关掉飞行模式，手机处于可接听电话的状态（%s）。从现在起，"
                 "内核像总机一样自己接起来电（三次握手），把接通的电话挂起排队，等待 accept()"
                 "（%s）。"), st(ev), ev->args);
}

static void
explain_connect_udp(sf__cursor *o, const sf_trace_event *ev, const char *to)
{
    sf__put(o, L(o, "connect() on UDP: no call is set up and nothing is sent; it only writes"
                 " %s on every envelope, so send() needs no address and only letters from"
                 " there are taken (our own return address is %s).",
                 "UDP 上的 connect()：不建立通话，什么也不发送；它只是在每个信封上写好 %s，"
                 "于是 send() 不需要地址，也只收来自那里的信（我们自己的回信地址是 %s）。"),
            to, ev->local ? ev->local : "-");
}

static void
explain_connect(sf__cursor *o, const sf_trace_event *ev)
{
    char a[SF_ADDR_STRLEN];
    const char *to = addr_or_peer(ev, a, sizeof(a)), *me = ev->local ? ev->local : "-";

    if (udp(ev)) {
        explain_connect_udp(o, ev, to);
        return;
    }
    if (ev->notes & SF_TRACE_N_BOUND)
        sf__put(o, L(o, "connect(): someone dials %s from the number the caller chose itself"
                     " with bind(), %s, and the kernel sent a SYN. ", "connect()：拨打 %s，"
                     "用的是调用者自己用 bind() 选定的号码 %s；内核发出 SYN。"), to, me);
    else
        sf__put(o, L(o, "connect(): someone dials %s. The kernel picked the caller's own"
                     " number, %s (a free local port), and sent a SYN. ", "connect()：一个人"
                     "知道你的电话号码，开始拨打 %s。内核为拨号的一方分配了一个自由的本地端口号"
                     " %s，并发出 SYN。"), to, me);
    if (ev->tcp_state == SF_TCP_SYN_SENT)
        sf__put(o, L(o, "The line rings: SYN_SENT, waiting for the SYN-ACK.",
                     "电话在响铃：SYN_SENT，等待 SYN-ACK。"));
    else if (ev->tcp_state == SF_TCP_ESTABLISHED && ev->result == 0)
        sf__put(o, L(o, "connect() returned once the three-way handshake was complete (SYN,"
                     " SYN-ACK, ACK): the line is open (ESTABLISHED).", "三次握手完成（SYN、"
                     "SYN-ACK、ACK）后 connect() 才返回：线路已接通（ESTABLISHED）。"));
    else if (ev->tcp_state == SF_TCP_ESTABLISHED)
        sf__put(o, L(o, "On loopback the SYN-ACK came back before connect() returned: the"
                     " handshake is already complete (ESTABLISHED).", "在回环接口上，SYN-ACK "
                     "在 connect() 返回之前就回来了：三次握手已经完成（ESTABLISHED）。"));
    else if (ev->tcp_state == SF_TCP_CLOSE)
        sf__put(o, L(o, "The answer came back before connect() returned, and it is no"
                     " (CLOSE): see the next line.", "在 connect() 返回之前回答就来了，"
                     "而且是拒绝（CLOSE）：见下一行。"));
    else
        sf__put(o, L(o, "State: %s.", "状态：%s。"), st(ev));
}

/* A nonblocking connect() that is under way is no failure. */
static int
connect_failed(sf__cursor *o, const sf_trace_event *ev)
{
    if (ev->err != EINPROGRESS)
        return 0;
    explain_connect(o, ev);
    return 1;
}

static void
connect_entered(sf__cursor *o, const sf_trace_event *ev)
{
    char a[SF_ADDR_STRLEN];

    sf__put(o, L(o, "connect(): dialling %s; the caller sleeps until the three-way handshake"
                 " is complete.", "connect()：正在拨打 %s；调用者休眠，直到三次握手完成。"),
            addr_or_peer(ev, a, sizeof(a)));
}

static void
explain_connect_done(sf__cursor *o, const sf_trace_event *ev)
{
    sf__put(o, L(o, "The three-way handshake is complete (SYN, SYN-ACK, ACK): the line is"
                 " open (%s), round trip %u us.", "三次握手完成（SYN、SYN-ACK、ACK）：线路已"
                 "接通（%s），往返时间 %u 微秒。"), st(ev), ev->rtt_us);
}

static void
explain_accept(sf__cursor *o, const sf_trace_event *ev)
{
    sf__put(o, L(o, "accept(): you take the first call off hold: the switchboard (the"
                 " kernel) had already answered it, and accept() hands you its private line"
                 " on a new descriptor %ld (%s), ", "accept()：你听到手机振铃，按下了接听按钮"
                 "——其实总机（内核）已经接起了这个电话，accept() 把排在最前面的挂起电话交给"
                 "你：新描述符 %ld 上的私有通信链路（%s），"), ev->result, st(ev));
    if (ev->notes & SF_TRACE_N_NO_ADDR)
        sf__put(o, L(o, "to a caller you did not ask about (the address argument was NULL;"
                     " getpeername() would tell: %s). ", "对方是谁你没有问（地址参数为 NULL；"
                     "getpeername() 可以告诉你：%s）。"), ev->peer ? ev->peer : "-");
    else
        sf__put(o, L(o, "to the caller at %s. ", "对方是 %s。"), ev->peer ? ev->peer : "-");
    sf__put(o, L(o, "The first phone, descriptor %d, stays switched on for the next caller",
                 "原来的手机（监听套接字，描述符 %d）仍然开着，等待下一个来电"), ev->fd);
    if (ev->accept_queue > 0)
        sf__put(o, L(o, " (%d more waiting).", "（还有 %d 个在等）。"), ev->accept_queue);
    else
        sf__put(o, L(o, ".", "。"));
}

static int
accept_failed(sf__cursor *o, const sf_trace_event *ev)
{
    if (ev->err == EINVAL)
        sf__put(o, L(o, "accept(): only a phone that is switched on (listen()) can be"
                     " answered; this one is %s, so accept() fails with EINVAL.",
                     "accept()：只有开着的手机（listen() 之后）才能接听；这一部是 %s，所以"
                     " accept() 以 EINVAL 失败。"), st(ev));
    else if (ev->err == EAGAIN)
        sf__put(o, L(o, "accept(): nobody is calling: no finished call waits in the queue and"
                     " this phone does not wait (nonblocking), so accept() returns EAGAIN at"
                     " once.", "accept()：没有人打来：队列中没有已完成的呼叫，而这部手机不等待"
                     "（非阻塞），所以 accept() 立即返回 EAGAIN。"));
    else if (ev->err == EFAULT)
        sf__put(o, L(o, "accept(): a bad place for the result (EFAULT): given an address"
                     " buffer but no length, Linux takes the connection off the queue and"
                     " then fails: that caller is lost.", "accept()：结果的地址无效（EFAULT）："
                     "给了地址缓冲区却没有给长度，Linux 先从队列中取出了连接再失败：这个呼叫"
                     "就丢失了。"));
    else
        return 0;
    return 1;
}

static void
accept_entered(sf__cursor *o, const sf_trace_event *ev)
{
    (void)ev;
    sf__put(o, L(o, "accept(): no call on hold yet: the server sleeps in accept() until the"
                 " switchboard has answered one (a completed three-way handshake).",
                 "accept()：还没有挂起的电话：服务器在 accept() 中休眠，直到总机接起一个电话"
                 "（三次握手完成）。"));
}

/* read() and write() on a connected UDP socket: a letter, not a call. */
static void
explain_udp_io(sf__cursor *o, const sf_trace_event *ev)
{
    const char *peer = ev->peer ? ev->peer : "-";

    if (ev->call == SF_CALL_READ)
        sf__put(o, L(o, "read(): a letter of %ld bytes arrives from %s, the address connect()"
                     " fixed; no call is set up.", "read()：一封 %ld 字节的信来自 %s，这是"
                     " connect() 固定的地址；不建立通话。"), ev->result, peer);
    else
        sf__put(o, L(o, "write(): a letter of %ld bytes is posted to %s, the address"
                     " connect() fixed; no call is set up.", "write()：一封 %ld 字节的信寄往"
                     " %s，这是 connect() 固定的地址；不建立通话。"), ev->result, peer);
}

static void
explain_read(sf__cursor *o, const sf_trace_event *ev)
{
    if (udp(ev))
        explain_udp_io(o, ev);
    else if (ev->result > 0)
        sf__put(o, L(o, "read(): you listen: %ld bytes from the other side.",
                     "read()：你在听：从对方收到 %ld 字节。"), ev->result);
    else if (ev->tcp_state == SF_TCP_CLOSE_WAIT)
        sf__put(o, L(o, "read() returned 0: the other side hung up (its FIN arrived). This"
                     " side is now CLOSE_WAIT: it may still talk, and should hang up too.",
                     "read() 返回 0：对方挂断了（它的 FIN 到了）。这一方现在是 CLOSE_WAIT："
                     "它还可以说话，也应该挂断。"));
    else if (ev->tcp_state == SF_TCP_TIME_WAIT)
        sf__put(o, L(o, "read() returned 0: the other side has hung up too. This side hung"
                     " up first, so the kernel keeps the connection in TIME_WAIT.",
                     "read() 返回 0：对方也挂断了。这一方先挂断，所以内核把连接保持在"
                     " TIME_WAIT。"));
    else
        sf__put(o, L(o, "read() returned 0: end of the call, the other side has hung up"
                     " (%s).", "read() 返回 0：通话结束，对方已经挂断（%s）。"), st(ev));
}

static int
read_failed(sf__cursor *o, const sf_trace_event *ev)
{
    if (ev->err != EAGAIN)
        return 0;
    sf__put(o, L(o, "read(): silence on the line: nothing to read yet (EAGAIN).",
                 "read()：线路上很安静：还没有可读的数据（EAGAIN）。"));
    return 1;
}

static void
read_entered(sf__cursor *o, const sf_trace_event *ev)
{
    (void)ev;
    sf__put(o, L(o, "read(): nothing to hear yet: the caller sleeps until bytes arrive or"
                 " the other side hangs up.", "read()：还没有可听的：调用者休眠，直到数据到达"
                 "或对方挂断。"));
}

static void
explain_write(sf__cursor *o, const sf_trace_event *ev)
{
    if (udp(ev))
        explain_udp_io(o, ev);
    else
        sf__put(o, L(o, "write(): you talk: %ld bytes go into the line.",
                     "write()：你在说话：%ld 字节进入线路。"), ev->result);
}

static int
write_failed(sf__cursor *o, const sf_trace_event *ev)
{
    if (ev->err == EAGAIN)
        sf__put(o, L(o, "write(): the line is full: the other side does not read fast enough"
                     " (EAGAIN).", "write()：线路满了：对方读得不够快（EAGAIN）。"));
    else if (ev->err == EPIPE && tcp(ev) && ev->peer == NULL)
        sf__put(o, L(o, "write(): there is no line to talk into: this phone never dialled"
                     " and nobody answered (no connection, EPIPE). TCP sends nothing before a"
                     " connection exists.", "write()：没有可以说话的链路：这部手机没有拨号，"
                     "也没有人接听（没有连接，EPIPE）。TCP 在建立连接之前不能发送数据。"));
    else
        return 0;
    return 1;
}

static void
explain_received(sf__cursor *o, const sf_trace_event *ev)
{
    char a[SF_ADDR_STRLEN];

    sf__put(o, L(o, "%s(): a letter arrives, %ld bytes, with its return address %s; no call"
                 " was set up.", "%s()：一封信到了，%ld 字节，带着回信地址 %s；没有建立通话。"),
            sf_call_name(ev->call), ev->result, addr_or_peer(ev, a, sizeof(a)));
}

static void
received_entered(sf__cursor *o, const sf_trace_event *ev)
{
    sf__put(o, L(o, "%s(): no letter yet: the caller sleeps until one arrives.",
                 "%s()：还没有信：调用者休眠，直到有信到达。"), sf_call_name(ev->call));
}

static void
explain_sent(sf__cursor *o, const sf_trace_event *ev)
{
    char a[SF_ADDR_STRLEN];

    sf__put(o, L(o, "%s(): a letter of %ld bytes is posted to %s: no dialling, no answer to"
                 " wait for; it just goes.", "%s()：一封 %ld 字节的信寄往 %s：不拨号，也不等"
                 "回答；寄出就走。"), sf_call_name(ev->call), ev->result,
            addr_or_peer(ev, a, sizeof(a)));
}

static void
explain_shutdown(sf__cursor *o, const sf_trace_event *ev)
{
    sf__put(o, L(o, "shutdown(SHUT_WR): you say goodbye but keep listening: a FIN goes out"
                 " (%s). The other side will read() 0 and may still talk.",
                 "shutdown(SHUT_WR)：你说了再见但还在听：发出一个 FIN（%s）。对方会 read()"
                 " 到 0，但还可以说话。"), st(ev));
}

static void
explain_close_connected(sf__cursor *o, const sf_trace_event *ev)
{
    switch (ev->tcp_state_before) {
    case SF_TCP_ESTABLISHED:
        sf__put(o, L(o, "close(): you hang up first: a FIN goes out and the connection is"
                     " now %s. The other side will read() 0 and sit in CLOSE_WAIT until it"
                     " hangs up too; this side ends in TIME_WAIT.", "close()：你先挂断：发出"
                     "一个 FIN，连接现在是 %s。对方会 read() 到 0，停在 CLOSE_WAIT，直到它也"
                     "挂断；这一方最后进入 TIME_WAIT。"), st(ev));
        return;
    case SF_TCP_CLOSE_WAIT:
        sf__put(o, L(o, "close(): the other side had hung up already; now you hang up too:"
                     " the last FIN goes out (%s).", "close()：对方已经先挂断了；现在你也挂断："
                     "发出最后一个 FIN（%s）。"), st(ev));
        return;
    case SF_TCP_FIN_WAIT1: case SF_TCP_FIN_WAIT2:
        sf__put(o, L(o, "close(): the goodbye was said already (shutdown); the descriptor"
                     " goes away and the kernel finishes the call (%s).", "close()：再见已经"
                     "说过了（shutdown）；描述符消失，内核完成这次通话（%s）。"), st(ev));
        return;
    default:
        if (ev->tcp_state == SF_TCP_TIME_WAIT)
            sf__put(o, L(o, "close(): both sides have hung up; the descriptor goes away, and"
                         " the kernel keeps the connection in TIME_WAIT for a while so that"
                         " late packets of this call cannot reach a new one.", "close()：双方"
                         "都挂断了；描述符消失，内核把连接在 TIME_WAIT 中保留一会儿，让这次通话"
                         "迟到的报文不会混进新的通话。"));
        else
            sf__put(o, L(o, "close(): the phone is put away (it was %s).",
                         "close()：手机收起来了（之前是 %s）。"),
                    sf_tcp_state_name(ev->tcp_state_before));
    }
}

static void
explain_close(sf__cursor *o, const sf_trace_event *ev)
{
    if (!tcp(ev))
        sf__put(o, L(o, "close(): %s is put away.", "close()：%s收起来了。"),
                ev->proto ? L(o, "the mailbox", "信箱") : L(o, "the descriptor", "描述符"));
    else if (ev->tcp_state_before == SF_TCP_LISTEN)
        sf__put(o, L(o, "close(): the phone is switched off: nobody can call this number any"
                     " more; lines already taken with accept() stay open, while callers still"
                     " on hold in the queue are cut off with a reset.", "close()：手机关机了："
                     "再也没有人能拨通这个号码；已经用 accept() 接过来的通话保持不变，而还在"
                     "队列中挂起的来电会被复位（RST）切断。"));
    else
        explain_close_connected(o, ev);
}

static void
explain_getsockopt(sf__cursor *o, const sf_trace_event *ev)
{
    sf__put(o, L(o, "getsockopt(TCP_INFO): ask the kernel how the line is: %s",
                 "getsockopt(TCP_INFO)：问内核线路怎么样：%s"), st(ev));
    if (ev->accept_queue >= 0)
        sf__put(o, L(o, ", with %d finished call%s waiting for accept().",
                     "，有 %d 个已完成的呼叫等待 accept()%s。"), ev->accept_queue,
                ev->accept_queue == 1 || o->lang == SF_LANG_ZH ? "" : "s");
    else if (ev->tcp_state == SF_TCP_SYN_SENT)
        sf__put(o, L(o, ": the SYN went out and no SYN-ACK came back yet; the line still"
                     " rings.", "：SYN 已发出，还没有 SYN-ACK 回来；电话还在响铃。"));
    else
        sf__put(o, L(o, ".", "。"));
}

static void
explain_sock_diag(sf__cursor *o, const sf_trace_event *ev)
{
    sf__put(o, L(o, "Ask the kernel about a connection whose descriptor may be gone (%s): %s.",
                 "问内核一个描述符可能已经不在的连接（%s）：%s。"), ev->args, st(ev));
    if (ev->tcp_state == SF_TCP_TIME_WAIT)
        sf__put(o, L(o, " TIME_WAIT: the side that hung up first waits (60 s on Linux) so"
                     " that late packets of this call die out.", "TIME_WAIT：先挂断的一方等待"
                     "（Linux 上 60 秒），让这次通话迟到的报文消失。"));
    else if (ev->tcp_state == SF_TCP_FIN_WAIT2)
        sf__put(o, L(o, " FIN_WAIT2: our goodbye was acknowledged; waiting for the other side"
                     " to hang up.", "FIN_WAIT2：我们的再见已被确认；等待对方挂断。"));
}

/* ---- the table: one entry per call ---- */

typedef struct explainer {
    void (*done)(sf__cursor *o, const sf_trace_event *ev);     /* the call's sentence */
    int (*failed)(sf__cursor *o, const sf_trace_event *ev);    /* its own errors, or 0 */
    void (*entered)(sf__cursor *o, const sf_trace_event *ev);  /* asleep in the call */
} explainer;

static const explainer explainers[SF_CALL_COUNT] = {
    [SF_CALL_SOCKET]       = { explain_socket, NULL, NULL },
    [SF_CALL_SETSOCKOPT]   = { explain_setsockopt, NULL, NULL },
    [SF_CALL_BIND]         = { explain_bind, NULL, NULL },
    [SF_CALL_LISTEN]       = { explain_listen, NULL, NULL },
    [SF_CALL_ACCEPT4]      = { explain_accept, accept_failed, accept_entered },
    [SF_CALL_CONNECT]      = { explain_connect, connect_failed, connect_entered },
    [SF_CALL_CONNECT_DONE] = { explain_connect_done, NULL, NULL },
    [SF_CALL_READ]         = { explain_read, read_failed, read_entered },
    [SF_CALL_WRITE]        = { explain_write, write_failed, NULL },
    [SF_CALL_RECVFROM]     = { explain_received, NULL, received_entered },
    [SF_CALL_SENDTO]       = { explain_sent, NULL, NULL },
    [SF_CALL_RECVMMSG]     = { explain_received, NULL, NULL },
    [SF_CALL_SENDMMSG]     = { explain_sent, NULL, NULL },
    [SF_CALL_SHUTDOWN]     = { explain_shutdown, NULL, NULL },
    [SF_CALL_CLOSE]        = { explain_close, NULL, NULL },
    [SF_CALL_GETSOCKOPT]   = { explain_getsockopt, NULL, NULL },
    [SF_CALL_SOCK_DIAG]    = { explain_sock_diag, NULL, NULL },
};

void
sf__explain(sf__cursor *o, const sf_trace_event *ev)
{
    const explainer *x = (int)ev->call > 0 && ev->call < SF_CALL_COUNT
                       ? &explainers[ev->call] : NULL;

    if (ev->phase == SF_TRACE_ENTRY) {
        if (x && x->entered)
            x->entered(o, ev);
        else
            sf__put(o, L(o, "%s(): the call sleeps until it can return.",
                         "%s()：调用休眠，直到可以返回。"), sf_call_name(ev->call));
    } else if (ev->result < 0 && ev->err) {
        if (x == NULL || x->failed == NULL || !x->failed(o, ev))
            explain_error(o, ev);
    } else if (x && x->done) {
        x->done(o, ev);
    } else {
        sf__put(o, L(o, "%s(): %s.", "%s()：%s。"), sf_call_name(ev->call), st(ev));
    }
}

int
sf__explained(sf_call call)
{
    return (int)call > 0 && call < SF_CALL_COUNT && explainers[call].done != NULL;
}

const char *
sf_trace_explain_in(const sf_trace_event *ev, int lang, char *buf, size_t cap)
{
    sf__cursor o = { buf, cap, 0, lang };

    if (cap)
        buf[0] = '\0';
    sf__explain(&o, ev);
    return buf;
}

const char *
sf_trace_explain(const sf_trace_event *ev, char *buf, size_t cap)
{
    return sf_trace_explain_in(ev, SF_LANG_EN, buf, cap);
}
