/* test_hist: the log-linear histogram — buckets, percentiles within 3 %, merging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sockflow/hist.h"

/* A small deterministic generator, so a failure can be reproduced. */
static uint64_t
next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The exact value at a percentile, by the same rank rule: the smallest value with at
 * least pct % of the values at or below it. */
static uint64_t
exact_percentile(const uint64_t *sorted, size_t n, double pct)
{
    size_t rank = (size_t)(pct / 100.0 * (double)n);

    if ((double)rank < pct / 100.0 * (double)n)
        rank++;
    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

static void
empty_is_zero(void **state)
{
    sf_hist h;

    (void)state;
    sf_hist_init(&h);
    assert_int_equal(h.count, 0);
    assert_int_equal(sf_hist_percentile(&h, 50), 0);
    assert_int_equal(sf_hist_percentile(&h, 100), 0);
    assert_true(sf_hist_mean(&h) == 0.0);
}

/* Small values have a bucket each; above, every bucket is at most 1/32 of its low end. */
static void
buckets_tile_the_range(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < 64; v++)
        assert_int_equal(sf_hist_bucket(v), (int)v);
    for (int i = 0; i < SF_HIST_BUCKETS; i++) {
        uint64_t lo = sf_hist_bucket_low(i), hi = sf_hist_bucket_high(i);

        assert_true(lo <= hi);
        assert_int_equal(sf_hist_bucket(lo), i);
        assert_int_equal(sf_hist_bucket(hi), i);
        if (i > 0)
            assert_true(sf_hist_bucket_high(i - 1) + 1 == lo);
        if (lo >= 64)
            assert_true((double)(hi - lo + 1) / (double)lo <= 1.0 / 32 + 1e-12);
    }
    assert_int_equal(sf_hist_bucket(SF_HIST_MAX), SF_HIST_BUCKETS - 1);
    assert_int_equal(sf_hist_bucket(UINT64_MAX), SF_HIST_BUCKETS - 1);
}

static void
min_max_mean_are_exact(void **state)
{
    sf_hist h;

    (void)state;
    sf_hist_init(&h);
    sf_hist_record(&h, 1000);
    sf_hist_record(&h, 3);
    sf_hist_record(&h, 123456789);
    assert_int_equal(h.count, 3);
    assert_int_equal(h.min, 3);
    assert_int_equal(h.max, 123456789);
    assert_int_equal(sf_hist_percentile(&h, 100), 123456789);
    assert_true(sf_hist_mean(&h) == (1000.0 + 3 + 123456789) / 3);
    /* percentiles are never outside what was seen */
    assert_true(sf_hist_percentile(&h, 0) >= 3);
    assert_true(sf_hist_percentile(&h, 99.9) <= 123456789);
}

static void
one_value_is_itself(void **state)
{
    sf_hist h;

    (void)state;
    sf_hist_init(&h);
    for (int i = 0; i < 1000; i++)
        sf_hist_record(&h, 777777);
    assert_int_equal(sf_hist_percentile(&h, 50), 777777);
    assert_int_equal(sf_hist_percentile(&h, 99.9), 777777);
}

/* Latency-like distributions over six decades: every percentile within 3 % of the
 * exact one (the bucket's middle is within 1.6 %). */
static void
percentiles_within_3_percent(void **state)
{
    static const double pcts[] = { 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99 };
    enum { N = 200000 };
    uint64_t *v = malloc(N * sizeof(*v)), seed = 0x2545F4914F6CDD1Du;
    sf_hist h;

    (void)state;
    assert_non_null(v);
    for (int shape = 0; shape < 3; shape++) {
        sf_hist_init(&h);
        for (int i = 0; i < N; i++) {
            uint64_t r = next_rand(&seed);

            if (shape == 0)         /* uniform 1 µs .. 10 ms in ns */
                v[i] = 1000 + r % 10000000;
            else if (shape == 1)    /* spread over six decades: 1 µs .. 2 s */
                v[i] = ((r >> 8) % 1000 + 1000) << (r % 21);
            else                    /* a body and a long tail */
                v[i] = r % 100 == 0 ? 5000000 + r % 50000000 : 20000 + r % 30000;
            sf_hist_record(&h, v[i]);
        }
        qsort(v, N, sizeof(*v), cmp_u64);
        for (size_t k = 0; k < sizeof(pcts) / sizeof(pcts[0]); k++) {
            double exact = (double)exact_percentile(v, N, pcts[k]);
            double got = (double)sf_hist_percentile(&h, pcts[k]);

            if (got < exact * 0.97 || got > exact * 1.03)
                fail_msg("shape %d p%g: %.0f, exact %.0f", shape, pcts[k], got, exact);
        }
        assert_int_equal(sf_hist_percentile(&h, 100), v[N - 1]);
        assert_int_equal(h.min, v[0]);
    }
    free(v);
}

/* Two halves merged give the same histogram as all of it at once. */
static void
merge_equals_whole(void **state)
{
    sf_hist *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b)), *all = malloc(sizeof(*all));
    uint64_t seed = 42;

    (void)state;
    assert_true(a && b && all);
    sf_hist_init(a);
    sf_hist_init(b);
    sf_hist_init(all);
    for (int i = 0; i < 50000; i++) {
        uint64_t x = next_rand(&seed) % 100000000;

        sf_hist_record(i % 2 ? a : b, x);
        sf_hist_record(all, x);
    }
    sf_hist_merge(a, b);
    assert_memory_equal(a, all, sizeof(*a));
    sf_hist_init(b);
    sf_hist_merge(a, b);            /* an empty one changes nothing */
    assert_memory_equal(a, all, sizeof(*a));
    free(a);
    free(b);
    free(all);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_is_zero),
        cmocka_unit_test(buckets_tile_the_range),
        cmocka_unit_test(min_max_mean_are_exact),
        cmocka_unit_test(one_value_is_itself),
        cmocka_unit_test(percentiles_within_3_percent),
        cmocka_unit_test(merge_equals_whole),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
