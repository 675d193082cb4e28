/* SPDX-License-Identifier: Apache-2.0 */
#include "caps.h"

#include <cap-ng.h>
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "log.h"

/* What serving a passthrough filesystem for the guest's callers takes, and no more. */
static const int kept[] = {
    CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID,
    CAP_SETGID, CAP_SETUID,       CAP_MKNOD,  CAP_SETFCAP,
};

enum modcap_use {
    MODCAP_CHECK,    /* only validate */
    MODCAP_APPLY,    /* add and drop */
    MODCAP_ADD_ONLY, /* add only: the monitor keeps what its child may drop itself */
};

/* Applies (or only checks) each "+name" / "-name" of modcaps to libcap-ng's state. */
static int each_modcap(const char *modcaps, enum modcap_use use)
{
    char *copy = strdup(modcaps ? modcaps : "");
    if (!copy)
        return -ENOMEM;
    int ret = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ":", &save); tok && ret == 0;
         tok = strtok_r(NULL, ":", &save)) {
        char sign = tok[0];
        const char *name = tok + 1;
        if (strncasecmp(name, "cap_", 4) == 0)
            name += 4;
        char lower[64];
        size_t i = 0;
        for (; name[i] && i < sizeof(lower) - 1; i++)
            lower[i] = (char)tolower((unsigned char)name[i]);
        lower[i] = '\0';
        int cap = capng_name_to_capability(lower);
        if ((sign != '+' && sign != '-') || cap < 0) {
            fprintf(stderr,
                    "virtiofsd: invalid --modcaps entry '%s'; expected +name or -name "
                    "(e.g. +sys_admin:-mknod)\n",
                    tok);
            ret = -EINVAL;
        } else if (use == MODCAP_APPLY || (use == MODCAP_ADD_ONLY && sign == '+')) {
            capng_update(sign == '+' ? CAPNG_ADD : CAPNG_DROP, CAPNG_EFFECTIVE | CAPNG_PERMITTED,
                         (unsigned)cap);
            capng_update(sign == '+' ? CAPNG_ADD : CAPNG_DROP, CAPNG_BOUNDING_SET, (unsigned)cap);
        }
    }
    free(copy);
    return ret;
}

int caps_check_modcaps(const char *modcaps)
{
    return each_modcap(modcaps, MODCAP_CHECK);
}

int caps_drop(const char *modcaps, bool privileged)
{
    return caps_drop_fh(modcaps, privileged, CAPS_FH_NONE);
}

int caps_drop_fh(const char *modcaps, bool privileged, enum caps_fh fh)
{
    if (privileged) {
        capng_clear(CAPNG_SELECT_BOTH | CAPNG_SELECT_BOUNDS);
        for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
            capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, (unsigned)kept[i]);
            capng_update(CAPNG_ADD, CAPNG_BOUNDING_SET, (unsigned)kept[i]);
        }
        if (fh != CAPS_FH_NONE) {
            capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_DAC_READ_SEARCH);
            capng_update(CAPNG_ADD, CAPNG_BOUNDING_SET, CAP_DAC_READ_SEARCH);
        }
        int ret = each_modcap(modcaps, MODCAP_APPLY);
        if (ret < 0)
            return ret;
        if (fh == CAPS_FH_REQUIRED &&
            !capng_have_capability(CAPNG_PERMITTED, CAP_DAC_READ_SEARCH)) {
            log_error("cannot drop DAC_READ_SEARCH with --inode-file-handles=prefer or "
                      "mandatory, or --migration-mode=file-handles: opening file handles "
                      "needs it");
            return -EINVAL;
        }
        if (capng_apply(CAPNG_SELECT_BOTH | CAPNG_SELECT_BOUNDS) < 0) {
            log_error("cannot drop capabilities");
            return -EPERM;
        }
    }
    /* No exec can ever gain privileges again; threads started later inherit it. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        int err = errno;
        log_error("PR_SET_NO_NEW_PRIVS: %s", strerror(err));
        return -err;
    }
    return 0;
}

int caps_drop_all(void)
{
    /* The bounding set can only be lowered with CAP_SETPCAP (not so in an unprivileged
     * start, whose effective set is empty anyway). */
    capng_get_caps_process();
    bool bounds = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP);
    capng_clear(CAPNG_SELECT_BOTH | CAPNG_SELECT_BOUNDS);
    if (capng_apply(bounds ? CAPNG_SELECT_BOTH | CAPNG_SELECT_BOUNDS : CAPNG_SELECT_BOTH) < 0)
        return -EPERM;
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -errno : 0;
}

static void keep_cap(unsigned cap)
{
    capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, cap);
    capng_update(CAPNG_ADD, CAPNG_BOUNDING_SET, cap);
}

int caps_keep_for_monitor(const char *modcaps, enum caps_fh fh)
{
    capng_clear(CAPNG_SELECT_BOTH | CAPNG_SELECT_BOUNDS);
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        keep_cap((unsigned)kept[i]);
    if (fh != CAPS_FH_NONE)
        keep_cap(CAP_DAC_READ_SEARCH);
    int ret = each_modcap(modcaps, MODCAP_ADD_ONLY);
    if (ret < 0)
        return ret;
    /* SYS_ADMIN: a new PID namespace, the child's mount and network namespaces, its mounts
     * and pivot_root. SETPCAP: the child lowers its own bounding set. */
    keep_cap(CAP_SYS_ADMIN);
    keep_cap(CAP_SETPCAP);
    /* The bounding set first (it needs SETPCAP, still effective), then the sets. */
    if (capng_apply(CAPNG_SELECT_BOTH | CAPNG_SELECT_BOUNDS) < 0) {
        log_error("sandbox: cannot lower the monitor's capabilities");
        return -EPERM;
    }
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -errno : 0;
}

int caps_monitor_effective(bool on)
{
    if (capng_get_caps_process() < 0)
        return -EPERM;
    for (unsigned cap = 0; cap <= CAP_LAST_CAP; cap++) {
        bool want = on && capng_have_capability(CAPNG_PERMITTED, cap);
        capng_update(want ? CAPNG_ADD : CAPNG_DROP, CAPNG_EFFECTIVE, cap);
    }
    return capng_apply(CAPNG_SELECT_CAPS) < 0 ? -EPERM : 0;
}
