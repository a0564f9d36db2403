/* sbctl_metrics.h - sbctl metrics (sbctl_metrics.c), for sbctl.c. */
#ifndef SB_SERVICE_SBCTL_METRICS_H
#define SB_SERVICE_SBCTL_METRICS_H

#include <cjson/cJSON.h>

/* Prints the status reply r in the Prometheus text format on standard output. */
void sb__sbctl_metrics(const cJSON* r);

#endif
