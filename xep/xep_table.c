/*
 * xep_table.c: the one list of protocol handlers on the service JID.
 * Adding an extension means adding its descriptor here (and to XEPS.md).
 */
#include "config.h"

#include "xep.h"

const struct xep_handler *const xep_handlers[] = {
    &xep0030_disco_info, &xep0030_disco_items, &xep0050_adhoc,
    &xep0092_version,    &xep0199_ping,        NULL,
};
