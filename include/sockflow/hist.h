/* hist: a log-linear histogram of latencies (or any non-negative counts), fixed size,
 * about 3 % wide buckets, merge-able, no allocation. */
#ifndef SOCKFLOW_HIST_H
#define SOCKFLOW_HIST_H

#include <stdint.h>

/* Each power of two is split into 2^SF_HIST_SUB_BITS linear buckets: a bucket is at
 * most 1/32 (3.1 %) of its values wide, so a percentile taken at the bucket's middle is
 * within 1.6 % of the true value. Values below 64 are counted exactly. Values at or
 * above SF_HIST_MAX (2^42, about 73 minutes in nanoseconds) go to the last bucket. */
#define SF_HIST_SUB_BITS 5
#define SF_HIST_MAX_BITS 42
#define SF_HIST_BUCKETS ((SF_HIST_MAX_BITS - SF_HIST_SUB_BITS + 1) << SF_HIST_SUB_BITS)
#define SF_HIST_MAX (((uint64_t)1 << SF_HIST_MAX_BITS) - 1)

typedef struct sf_hist {
    uint64_t count;
    uint64_t min, max;      /* exact; min is UINT64_MAX while empty */
    uint64_t sum;
    uint64_t b[SF_HIST_BUCKETS];
} sf_hist;

/* Empty the histogram. */
void sf_hist_init(sf_hist *h);

/* Count one value. */
void sf_hist_record(sf_hist *h, uint64_t v);

/* Add the counts of src to dst. */
void sf_hist_merge(sf_hist *dst, const sf_hist *src);

/* The value below or at which pct percent (0..100) of the values lie: the middle of the
 * bucket holding that rank, kept within [min, max]; pct 100 is max, exactly. 0 when
 * empty. */
uint64_t sf_hist_percentile(const sf_hist *h, double pct);

/* Arithmetic mean, exact (0 when empty). */
double sf_hist_mean(const sf_hist *h);

/* The bucket a value goes to, and the lowest and highest value of a bucket (tests). */
int sf_hist_bucket(uint64_t v);
uint64_t sf_hist_bucket_low(int i);
uint64_t sf_hist_bucket_high(int i);

#endif
