/* demo: the seed tutorial's eight sections live on loopback: every socket call printed
 * as it happens with the TCP state the kernel reports after it, and each claim of the
 * seed checked against what the kernel showed. This file is the command and the table
 * of sections; a section is one function in a demo_*.c file and one line here. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo_wire.h"
#include "traceopt.h"

static const struct {
    const char *title, *title_zh;       /* the seed's own section titles */
    const char *notice, *notice_zh;     /* the one line of what to notice */
    demo_section_fn run;
} sections[] = {
    { "The TCP client-server flow", "TCP Client-Server交互流程",
      "the server calls socket, bind, listen, accept, then reads and writes; the client"
      " socket, connect, then writes and reads; connect() returns 0 only once the"
      " three-way handshake is complete, and read() returns 0 when the other side closes.",
      "服务器依次调用 socket、bind、listen、accept，然后读写；客户端调用 socket、connect，"
      "然后写读；connect() 在三次握手完成后才返回 0，对方关闭后 read() 返回 0。",
      demo_tcp_flow },
    { "The UDP client-server flow", "UDP Client-Server交互流程",
      "no listen, accept or connect: the client has no port until its first sendto(), and"
      " the server's blocking recvfrom() sleeps until a datagram comes.",
      "没有 listen、accept 或 connect：客户端在第一次 sendto() 之前没有端口，服务器阻塞的"
      " recvfrom() 休眠到数据报到达。", demo_udp_flow },
    { "The telephone picture", "一个形象的比喻",
      "each call is a step of a phone call (socket = a phone, bind = its number, listen ="
      " switched on, connect = dialling, accept = answering, read/write = talking, close ="
      " hanging up), and where the picture breaks: the kernel answers before accept(), and"
      " a caller may talk while on hold.",
      "建立TCP连接就像是一个电话系统：socket() 你有了一部手机，bind() 激活SIM卡，listen()"
      " 开机，connect() 拨打，accept() 接听，write()/read() 通话，close() 挂断；以及比喻不成立"
      "的地方：内核在 accept() 之前就已接听，来电者在挂起时也能说话。", demo_telephone },
    { "listen(), accept() and connect() in depth", "深入挖掘一：listen()、accept() 与 connect()",
      "listen() moves CLOSE to LISTEN; TCP sends no data before a connection; accept()"
      " sleeps until a handshake completes and takes the first pending connection, a new"
      " descriptor each; connect() gives the socket a free local port; UDP needs none of"
      " the three.",
      "listen() 使套接字由 CLOSE 转换成 LISTEN；TCP 在连接之前不能发送数据；accept() 休眠"
      "直到握手完成，从挂起连接队列中提取第一个连接，每次一个新描述符；connect() 为套接字"
      "分配一个自由的本地端口号；UDP 不需要这三个函数。", demo_in_depth },
    { "accept() as Microsoft documents it", "深入挖掘二：微软文档中的 accept()",
      "each sentence of the documentation, on Linux: the new socket has the listener's"
      " options but not its O_NONBLOCK or FD_CLOEXEC; EAGAIN when nothing is pending;"
      " EINVAL on an accepted socket; addrlen is a value-result argument.",
      "文档的每一句在 Linux 上的表现：新套接字继承监听套接字的选项，但不继承 O_NONBLOCK 和"
      " FD_CLOEXEC；没有挂起连接时 EAGAIN；在已接受的套接字上 EINVAL；addrlen 是值-结果参数。",
      demo_accept_documented },
    { "How accept() really works", "深入挖掘三：accept() 到底是怎样工作的",
      "the kernel completes and queues connections before any accept(); every connected"
      " socket has the server's own port, told apart by the 4-tuple; closing the listener"
      " resets the callers still queued.",
      "内核在任何 accept() 之前就完成并排队连接；每个已连接套接字都使用服务器自己的端口，"
      "靠四元组区分；关闭监听套接字会复位仍在排队的来电者。", demo_accept_inside },
    { "The three-way handshake", "深入挖掘四：TCP三次握手",
      "SYN, SYN-ACK, ACK take the client from SYN_SENT to ESTABLISHED (a SYN held by a full"
      " queue shows SYN_SENT); the side that closes first passes FIN_WAIT2 and ends in"
      " TIME_WAIT, the other passes CLOSE_WAIT and LAST_ACK.",
      "SYN、SYN-ACK、ACK 使客户端从 SYN_SENT 进入 ESTABLISHED（队列满时被挡住的 SYN 显示出"
      " SYN_SENT）；先关闭的一方经过 FIN_WAIT2，最后处于 TIME_WAIT，另一方经过 CLOSE_WAIT 和"
      " LAST_ACK。", demo_handshake },
    { "The listening socket and the connected socket", "深入挖掘五：监听套接字与已连接套接字",
      "the server, in a process of its own: one listening socket (descriptor 3) for its"
      " whole life; one connected socket per client (descriptor 4), closed when that client"
      " is served; accept() again for the next.",
      "服务器在自己的进程中：一个监听套接字（描述符 3）存在于整个生命周期；每个客户一个已连接"
      "套接字（描述符 4），服务完就关闭；下一个客户需要重新调用 accept()。", demo_two_sockets },
};

#define NSECTIONS ((int)(sizeof(sections) / sizeof(sections[0])))

int
demo_section_count(void)
{
    return NSECTIONS;
}

static void
print_usage(void)
{
    printf("usage: sockflow demo [--section N] [--lang en|zh] [--step] [--json] [--explain]\n"
           "                     [-v] [--color[=auto|always|never]] [--trace-file FILE]\n"
           "\n"
           "The seed tutorial, live: both sides of the TCP and the UDP flow on loopback,\n"
           "every socket call as it happens (its arguments, result and the TCP state the\n"
           "kernel reports after it). %d numbered sections, as the tutorial numbers them;\n"
           "each claim is checked against what the kernel showed ('seen:'), and the exit\n"
           "status is 1 if one was not.\n"
           "\n"
           "  -n, --section N        run section N only (1-%d)\n"
           "  -l, --lang en|zh       sections, notes, checks and explanations in English\n"
           "                         (the default) or in the tutorial's Chinese; without\n"
           "                         it, the locale chooses as gettext would: LANGUAGE\n"
           "                         (a list, zh_CN:en), else LC_ALL, LC_MESSAGES, LANG;\n"
           "                         the C locale means English\n"
           "  -s, --step[=event]     pause after each section (or each call) until Enter\n"
           "  -v, --verbose          also the probes behind the checks (TCP_INFO, sock_diag)\n"
           "      --color[=WHEN]     colour: auto (on a terminal, unless NO_COLOR), always,\n"
           "                         never\n"
           "  -j, --json             one JSON object per line: the calls as trace events,\n"
           "                         sections, notes and checks as events of their own\n"
           "      --trace[=text|json]  the same choice of format as --json\n"
           "      --explain          a telephone-picture sentence under every call\n"
           "      --trace-data       hex dumps of the bytes read and written\n"
           "      --trace-file FILE  write everything to FILE instead of standard output\n"
           "      --wire             the segments in every section (section 7 always)\n"
           "      --ladder           a ladder after every section (1, 2 and 7 always)\n"
           "      --html FILE        the figures of sections 1, 2 and 7 as HTML\n"
           "      --svg FILE         the first of them as SVG\n"
           "  -h, --help\n"
           "\n"
           "Sections:\n", NSECTIONS, NSECTIONS);
    for (int i = 0; i < NSECTIONS; i++)
        printf("  %d %s\n", i + 1, sections[i].title);
}

enum { OPT_COLOR = 0x7200 };

static const struct option demo_opts[] = {
    { "section", required_argument, NULL, 'n' },
    { "lang", required_argument, NULL, 'l' },
    { "step", optional_argument, NULL, 's' },
    { "verbose", no_argument, NULL, 'v' },
    { "color", optional_argument, NULL, OPT_COLOR },
    { "colour", optional_argument, NULL, OPT_COLOR },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    CMD_TRACE_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

/* One option: 0 to go on, EXIT_USAGE (err set) or CMD_HELP. */
static int
take_option(demo_opts_t *o, int ch, char **argv, sf_err *err)
{
    const char *arg = optarg;
    long v;

    switch (ch) {
    case 'n':
        if ((v = cmd_parse_count(arg, NSECTIONS)) < 1)
            return cmd_parse_error(err, "--section %s: a number from 1 to %d", arg,
                                   NSECTIONS);
        o->only = (int)v;
        return 0;
    case 'l':
        if (strcmp(arg, "en") != 0 && strcmp(arg, "zh") != 0)
            return cmd_parse_error(err, "--lang %s: en or zh", arg);
        o->lang = strcmp(arg, "zh") == 0 ? SF_LANG_ZH : SF_LANG_EN;
        return 0;
    case OPT_COLOR:
        if (arg && strcmp(arg, "always") && strcmp(arg, "never") && strcmp(arg, "auto"))
            return cmd_parse_error(err, "--color=%s: auto, always or never", arg);
        o->colour = arg == NULL || strcmp(arg, "always") == 0 ? 1
                  : strcmp(arg, "never") == 0 ? 0 : -1;
        return 0;
    case 's':
        if (arg && strcmp(arg, "section") && strcmp(arg, "event"))
            return cmd_parse_error(err, "--step=%s: section or event", arg);
        o->step = arg && strcmp(arg, "event") == 0 ? DEMO_STEP_EVENT : DEMO_STEP_SECTION;
        return 0;
    case 'v': o->verbose = 1; return 0;
    case 'j': o->ct.format = SF_TRACE_JSON; return 0;
    case 'h': return CMD_HELP;
    default:
        if ((v = cmd_trace_take(&o->ct, ch, arg, err)) < 0)
            return EXIT_USAGE;
        return v == 0 ? cmd_option_error(ch, argv, err) : 0;
    }
}

int
demo_parse(int argc, char **argv, demo_opts_t *o, sf_err *err)
{
    int ch, rc;

    *o = (demo_opts_t){ .lang = demo_locale_lang(), .colour = -1, .ct.cmd = "demo" };
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":n:l:svjh", demo_opts, NULL)) != -1)
        if ((rc = take_option(o, ch, argv, err)) != 0)
            return rc;
    if (optind < argc)
        return cmd_parse_error(err, "unexpected argument '%s'", argv[optind]);
    return 0;
}

static void
print_head(demo *d)
{
    if (d->sink.format == SF_TRACE_JSON)
        sf_trace_sink_note(&d->sink, "demo", "sockflow demo %s", SOCKFLOW_VERSION);
    else
        sf_trace_sink_note(&d->sink, "note", "%s", Z(d,
            "sockflow demo: the tutorial's eight sections on loopback, every socket call as\n"
            "it happens: seconds since start, who, call(descriptor, arguments) = result,\n"
            "and the TCP state the kernel reports after it (TCP_INFO).",
            "sockflow demo：教程的八个部分在回环接口上运行，每个套接字调用都在发生时打印：\n"
            "开始以来的秒数、调用者、调用(描述符, 参数) = 结果，以及调用之后内核报告的\n"
            "TCP 状态（TCP_INFO）。"));
}

static void
print_summary(demo *d)
{
    int seen = d->claims - d->failed;

    if (d->sink.format == SF_TRACE_JSON)
        sf_trace_sink_note(&d->sink, "summary", "%d of %d claims seen in the kernel%s",
                           seen, d->claims, d->skipped ? " (some skipped)" : "");
    else
        sf_trace_sink_note(&d->sink, "note", Z(d, "\n%d of %d claims seen in the kernel%s.",
                                               "\n%d 条论断中有 %d 条在内核中得到证实%s。"),
                           d->lang == SF_LANG_ZH ? d->claims : seen,
                           d->lang == SF_LANG_ZH ? seen : d->claims,
                           d->skipped ? Z(d, " (some skipped)", "（有些跳过）") : "");
}

static int
run(demo *d, int only)
{
    int rc = EXIT_OK;

    print_head(d);
    for (int i = 0; i < NSECTIONS; i++) {
        if (only && only != i + 1)
            continue;
        demo_section(d, i + 1, Z(d, sections[i].title, sections[i].title_zh),
                     Z(d, sections[i].notice, sections[i].notice_zh));
        demo_wire_begin(d, i + 1);
        if (sections[i].run(d) != EXIT_OK)
            rc = EXIT_FAIL;
        demo_wire_end(d, i + 1);
        demo_section_end(d, !only && i + 1 < NSECTIONS);
    }
    print_summary(d);
    return d->failed ? EXIT_FAIL : rc;
}

int
cmd_demo(int argc, char **argv)
{
    static demo d;
    demo_opts_t o;
    demo_wire_opts wo;
    unsigned flags;
    sf_err err;
    int rc;

    if ((rc = demo_parse(argc, argv, &o, &err)) == CMD_HELP) {
        print_usage();
        return EXIT_OK;
    }
    if (rc != 0)
        return cmd_usage_error("demo", "%s", err.msg);
    demo_wire_take_options(&wo, &o.ct);
    /* The demo's output is the trace: standard output unless --trace-file says. */
    if (o.ct.file == NULL)
        o.ct.file = "-";
    o.ct.on = 1;
    if ((rc = cmd_trace_open(&o.ct)) != 0)
        return rc;
    /* JSON is for programs: the same keys and texts whatever the language. */
    if (o.ct.format == SF_TRACE_JSON)
        o.lang = SF_LANG_EN;
    flags = o.ct.flags | SF_TRACE_F_NARROW | (o.lang == SF_LANG_ZH ? SF_TRACE_F_ZH : 0);
    demo_init(&d, o.ct.out, o.ct.format, flags, o.lang);
    d.verbose = o.verbose;
    d.step = o.step;
    d.colour = o.colour == 1 || (o.colour == -1 && o.ct.format != SF_TRACE_JSON &&
                                 isatty(fileno(o.ct.out)) && getenv("NO_COLOR") == NULL);
    if ((rc = demo_wire_start(&d, &wo)) == EXIT_OK)
        rc = run(&d, o.only);
    if (demo_wire_finish(&d) != EXIT_OK && rc == EXIT_OK)
        rc = EXIT_FAIL;
    cmd_trace_close(&o.ct);
    return rc;
}
