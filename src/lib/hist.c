/* hist: log-linear buckets. Below 2^(SUB_BITS+1) one bucket per value; above, each
 * power of two [2^m, 2^(m+1)) is cut into 2^SUB_BITS equal buckets, so the index is the
 * exponent and the top SUB_BITS bits below the leading one. */
#include <string.h>

#include "sockflow/hist.h"

#define SUB (1u << SF_HIST_SUB_BITS)

int
sf_hist_bucket(uint64_t v)
{
    int msb, shift;

    if (v > SF_HIST_MAX)
        v = SF_HIST_MAX;
    if (v < 2 * SUB)
        return (int)v;
    msb = 63 - __builtin_clzll(v);
    shift = msb - SF_HIST_SUB_BITS;
    return (int)(((unsigned)shift + 1) * SUB + (unsigned)(v >> shift) - SUB);
}

uint64_t
sf_hist_bucket_low(int i)
{
    unsigned shift;

    if (i < (int)(2 * SUB))
        return (uint64_t)i;
    shift = (unsigned)i / SUB - 1;
    return ((uint64_t)(i % SUB) + SUB) << shift;
}

uint64_t
sf_hist_bucket_high(int i)
{
    if (i < (int)(2 * SUB))
        return (uint64_t)i;
    return sf_hist_bucket_low(i) + ((uint64_t)1 << ((unsigned)i / SUB - 1)) - 1;
}

void
sf_hist_init(sf_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void
sf_hist_record(sf_hist *h, uint64_t v)
{
    h->b[sf_hist_bucket(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void
sf_hist_merge(sf_hist *dst, const sf_hist *src)
{
    if (src->count == 0)
        return;
    for (int i = 0; i < SF_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t
sf_hist_percentile(const sf_hist *h, double pct)
{
    uint64_t rank, seen = 0;
    double x;

    if (h->count == 0)
        return 0;
    if (pct >= 100.0)
        return h->max;
    if (pct < 0.0)
        pct = 0.0;
    /* The rank of the value, counted from 1: the smallest value with at least pct % of
     * the values at or below it. */
    x = pct / 100.0 * (double)h->count;
    rank = (uint64_t)x;
    if ((double)rank < x)
        rank++;
    if (rank < 1)
        rank = 1;
    for (int i = 0; i < SF_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t lo = sf_hist_bucket_low(i), hi = sf_hist_bucket_high(i);
            uint64_t mid = lo + (hi - lo) / 2;

            if (mid < h->min)
                mid = h->min;
            if (mid > h->max)
                mid = h->max;
            return mid;
        }
    }
    return h->max;
}

double
sf_hist_mean(const sf_hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
