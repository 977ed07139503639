/* demo_lang: the language the user's locale asks for, chosen by gettext's rules, for texts
 * that are compiled in (English and the tutorial's Chinese) rather than read from a
 * message catalogue. */
#include <langinfo.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "demo.h"

/* The language of one locale or LANGUAGE entry ("zh_CN.UTF-8", "zh", "en_GB"), or -1
 * when the demo has no text in it. */
static int
lang_of(const char *name, size_t len)
{
    if (len >= 2 && strncmp(name, "zh", 2) == 0 && (len == 2 || strchr("_.@", name[2])))
        return SF_LANG_ZH;
    if (len >= 2 && strncmp(name, "en", 2) == 0 && (len == 2 || strchr("_.@", name[2])))
        return SF_LANG_EN;
    return -1;
}

/* The C locale, where gettext translates nothing and ignores LANGUAGE. */
static int
is_c_locale(const char *name)
{
    return name[0] == '\0' || strcmp(name, "C") == 0 || strcmp(name, "POSIX") == 0 ||
           strncmp(name, "C.", 2) == 0;
}

/* The name of the LC_MESSAGES locale as setlocale(LC_MESSAGES, "") resolves it (LC_ALL,
 * then LC_MESSAGES, then LANG). A locale the system has not installed makes setlocale
 * fail, and gettext would then fall back to C; the texts here need no locale data, so the
 * name asked for counts all the same. The process's locale is put back to C: numbers and
 * error texts stay as they are. */
static void
messages_locale(char *name, size_t cap)
{
    static const char *const vars[] = { "LC_ALL", "LC_MESSAGES", "LANG" };
    const char *r = setlocale(LC_MESSAGES, "");

    snprintf(name, cap, "C");
    if (r) {
        snprintf(name, cap, "%s", r);
        setlocale(LC_MESSAGES, "C");
        return;
    }
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(vars[i]);

        if (v && *v) {
            snprintf(name, cap, "%s", v);
            return;
        }
    }
}

/* Can the terminal show UTF-8? nl_langinfo(CODESET) of the LC_CTYPE locale when the
 * system has it; else the codeset in the locale's name, if it names one. */
static int
utf8_terminal(const char *name)
{
    const char *dot = strchr(name, '.');
    int ok;

    if (setlocale(LC_CTYPE, "")) {
        ok = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
        setlocale(LC_CTYPE, "C");
        return ok;
    }
    return dot == NULL || strncasecmp(dot + 1, "utf-8", 5) == 0 ||
           strncasecmp(dot + 1, "utf8", 4) == 0;
}

int
demo_locale_lang(void)
{
    const char *list = getenv("LANGUAGE");
    char name[256];
    int lang = -1;

    messages_locale(name, sizeof(name));
    if (is_c_locale(name))
        return SF_LANG_EN;
    /* LANGUAGE is a priority list ("zh_CN:en"): its first language with texts wins. */
    while (list && *list && lang < 0) {
        size_t len = strcspn(list, ":");

        lang = lang_of(list, len);
        list += len + (list[len] == ':');
    }
    if (lang < 0)
        lang = lang_of(name, strlen(name));
    if (lang == SF_LANG_ZH && !utf8_terminal(name))
        return SF_LANG_EN;
    return lang < 0 ? SF_LANG_EN : lang;
}
