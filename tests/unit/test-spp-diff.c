/*
 * Which protected bytes a step changed (SPP step fallback)
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "system/spp-backend.h"

typedef struct Seen {
    unsigned n;
    unsigned offset[SPP_PAGE_SIZE / 8];
    unsigned len[SPP_PAGE_SIZE / 8];
} Seen;

static void record(unsigned offset, unsigned len, void *opaque)
{
    Seen *s = opaque;

    g_assert_cmpuint(s->n, <, SPP_PAGE_SIZE / 8);
    s->offset[s->n] = offset;
    s->len[s->n] = len;
    s->n++;
}

static uint8_t before[SPP_PAGE_SIZE], after[SPP_PAGE_SIZE];

static void fill(void)
{
    unsigned i;

    for (i = 0; i < SPP_PAGE_SIZE; i++) {
        before[i] = i * 7 + 3;
    }
    memcpy(after, before, SPP_PAGE_SIZE);
}

/* Nothing changed, or only writable sub-pages changed: no calls. */
static void test_unchanged(void)
{
    Seen s = { 0 };

    fill();
    g_assert_cmpuint(spp_diff_page(before, after, 0, 0, record, &s), ==, 0);
    memset(after + 128, 0xaa, 128);         /* sub-page 1 */
    g_assert_cmpuint(spp_diff_page(before, after, 1U << 1, 0, record, &s),
                     ==, 0);
    g_assert_cmpuint(s.n, ==, 0);
}

/* One changed byte: one call of one byte at that offset. */
static void test_one_byte(void)
{
    Seen s = { 0 };

    fill();
    after[4095] ^= 1;
    g_assert_cmpuint(spp_diff_page(before, after, 0, 0, record, &s), ==, 1);
    g_assert_cmpuint(s.offset[0], ==, 4095);
    g_assert_cmpuint(s.len[0], ==, 1);
}

/*
 * A 64-byte store straddling sub-pages 0 (writable) and 1 (protected),
 * as MOVDIR64B at offset 96 writes: only the 32 protected bytes, in
 * four 8-byte words, are reported.
 */
static void test_straddle(void)
{
    Seen s = { 0 };
    unsigned i;

    fill();
    for (i = 96; i < 160; i++) {
        after[i] = ~before[i];
    }
    g_assert_cmpuint(spp_diff_page(before, after, SPP_WP_ALL & ~(1U << 1), 0,
                                   record, &s), ==, 4);
    for (i = 0; i < 4; i++) {
        g_assert_cmpuint(s.offset[i], ==, 128 + 8 * i);
        g_assert_cmpuint(s.len[i], ==, 8);
    }
}

/* Inside a word, the call spans the first to the last changed byte. */
static void test_partial_word(void)
{
    Seen s = { 0 };

    fill();
    after[1026] ^= 0xff;
    after[1029] ^= 0xff;
    g_assert_cmpuint(spp_diff_page(before, after, 0, 0, record, &s), ==, 1);
    g_assert_cmpuint(s.offset[0], ==, 1026);
    g_assert_cmpuint(s.len[0], ==, 4);
}

/* An XSAVE image over the whole page, every other sub-page protected. */
static void test_whole_page(void)
{
    Seen s = { 0 };
    unsigned i;

    fill();
    for (i = 0; i < SPP_PAGE_SIZE; i++) {
        after[i] = before[i] + 1;
    }
    g_assert_cmpuint(spp_diff_page(before, after, 0x55555555, 0, record, &s),
                     ==, 16 * (SPP_SUBPAGE_SIZE / 8));
    for (i = 0; i < s.n; i++) {
        g_assert_cmpuint((s.offset[i] / SPP_SUBPAGE_SIZE) % 2, ==, 1);
        g_assert_cmpuint(s.len[i], ==, 8);
    }
}

/*
 * An 8-byte store at offset 124, across protected sub-pages 0 and 1:
 * one piece when the pieces are counted from the store's first byte
 * (phase 4), two 8-byte-aligned pieces otherwise.
 */
static void test_phase(void)
{
    Seen s = { 0 };
    unsigned i;

    fill();
    for (i = 124; i < 132; i++) {
        after[i] = ~before[i];
    }
    g_assert_cmpuint(spp_diff_page(before, after, 0, 124, record, &s), ==, 1);
    g_assert_cmpuint(s.offset[0], ==, 124);
    g_assert_cmpuint(s.len[0], ==, 8);
    s.n = 0;
    g_assert_cmpuint(spp_diff_page(before, after, 0, 0, record, &s), ==, 2);
    g_assert_cmpuint(s.offset[0], ==, 124);
    g_assert_cmpuint(s.len[0], ==, 4);
    g_assert_cmpuint(s.offset[1], ==, 128);
    g_assert_cmpuint(s.len[1], ==, 4);
    /* the first, shorter piece of a phase: bytes 0..3 */
    fill();
    after[0] ^= 1;
    after[3] ^= 1;
    after[4] ^= 1;
    s.n = 0;
    g_assert_cmpuint(spp_diff_page(before, after, 0, 4, record, &s), ==, 2);
    g_assert_cmpuint(s.offset[0], ==, 0);
    g_assert_cmpuint(s.len[0], ==, 4);
    g_assert_cmpuint(s.offset[1], ==, 4);
    g_assert_cmpuint(s.len[1], ==, 1);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/spp-diff/unchanged", test_unchanged);
    g_test_add_func("/spp-diff/one-byte", test_one_byte);
    g_test_add_func("/spp-diff/straddle", test_straddle);
    g_test_add_func("/spp-diff/partial-word", test_partial_word);
    g_test_add_func("/spp-diff/whole-page", test_whole_page);
    g_test_add_func("/spp-diff/phase", test_phase);
    return g_test_run();
}
