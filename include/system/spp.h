/*
 * Sub-page write protection (SPP)
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SYSTEM_SPP_H
#define SYSTEM_SPP_H

#include "exec/hwaddr.h"
#include "exec/memattrs.h"
#include "qapi/qapi-types-spp.h"

/*
 * Each 4 KiB guest page has a 32-bit write-permission vector.  Bit i
 * covers bytes [128 * i, 128 * i + 127] of the page; 1 means writable.
 */
#define SPP_PAGE_SHIFT      12
#define SPP_PAGE_SIZE       (1ULL << SPP_PAGE_SHIFT)
#define SPP_SUBPAGE_SHIFT   7
#define SPP_SUBPAGE_SIZE    (1U << SPP_SUBPAGE_SHIFT)
#define SPP_SUBPAGES        (SPP_PAGE_SIZE / SPP_SUBPAGE_SIZE)
#define SPP_WP_ALL          0xffffffffU
/* Frame numbers: a 64-bit address space has 2^52 pages. */
#define SPP_GFN_LIMIT       (1ULL << (64 - SPP_PAGE_SHIFT))
/* Most bytes one write judged by spp_judge_write() has. */
#define SPP_MAX_ACCESS      8

/* The sub-page of its page that @gpa is in. */
static inline unsigned spp_subpage_of(uint64_t gpa)
{
    return (gpa & (SPP_PAGE_SIZE - 1)) >> SPP_SUBPAGE_SHIFT;
}


/* Most pages that one query-subpage reply lists. */
#define SPP_QUERY_MAX_PAGES 65536


/* The policy a violation gets now. */
SppPolicy spp_get_policy(void);

/* Number of pages whose vector is not SPP_WP_ALL. */
uint64_t spp_protected_pages(void);

/* Current vector of @gfn (SPP_WP_ALL when the page is not protected). */
uint32_t spp_get_vector(uint64_t gfn);


/*
 * Judge a write of @size bytes (1 to 8; the memory core and the
 * accelerators never write more at once to trapped memory) at @gpa
 * made with @attrs.  The writer is
 * the current vCPU when there is one and @attrs are not
 * MEMTXATTRS_UNSPECIFIED (which devices use), else a device.  Fills
 * @allowed[i] for each byte: true when that byte may land in guest
 * memory.  Counts the violation, emits the event and applies the policy.
 * Returns true when at least one byte was protected.
 */
bool spp_judge_write(hwaddr gpa, unsigned size, MemTxAttrs attrs,
                     const uint64_t *data, bool *allowed);


/* Parse the -spp command line option.  Exits on error. */
void spp_parse_cmdline(const char *optarg);




/*
 * The step fallback, for a store the accelerator cannot complete on
 * trapped memory (KVM's emulator failing on an XSAVE store):
 * spp_step_begin() copies the trapped pages among @gfns and makes them
 * plain RAM; the caller lets the vCPU run that one instruction; then
 * spp_step_end() compares and judges what changed as a write by @attrs
 * (counters, events, policy), puts back the bytes the policy blocks and
 * restores the protection.  It judges 8-byte pieces counted from the
 * store's first byte in each page (@phases[i], modulo 8, for @gfns[i];
 * 0 when @phases is NULL), which is how KVM's emulator and TCG cut a
 * store into accesses, so all count one violation per piece.  The
 * caller holds the BQL throughout and keeps the other vCPUs out of
 * guest mode.
 */
#define SPP_STEP_MAX_PAGES 8
typedef struct SppStep SppStep;

/* NULL when none of the pages is trapped RAM. */
SppStep *spp_step_begin(const uint64_t *gfns, const unsigned *phases,
                        size_t n);
/* Returns the number of violations. */
unsigned spp_step_end(SppStep *step, MemTxAttrs attrs);


#endif
