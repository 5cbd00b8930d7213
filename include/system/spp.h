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

/* Most pages one memory_region_find() covers when walking a range. */
#define SPP_FIND_MAX_PAGES  (1ULL << 40)

/* Most pages that one query-subpage reply lists. */
#define SPP_QUERY_MAX_PAGES 65536

/* A vector applied to a range of pages. */
typedef struct SppRange {
    uint64_t gfn;
    uint64_t npages;
    uint32_t wp;
} SppRange;

/*
 * A backend enforces the vectors the core owns.  All hooks are called
 * with the BQL held.
 */
typedef struct SppBackendOps {
    SppBackend kind;
    /*
     * The core applied @n ranges, in order; @old holds the vectors the
     * pages had before (one per page, range after range).  Make the
     * backend's enforcement match spp_get_vector() before returning.
     * On failure the backend leaves its enforcement as it was; the core
     * then restores its vectors.
     */
    bool (*update)(const SppRange *r, size_t n, const uint32_t *old,
                   Error **errp);
    /* Number of memory regions (or slots) the backend uses, for stats. */
    uint64_t (*regions)(void);
    /* Unprotected pages whose writes it traps anyway; NULL: none. */
    uint64_t (*trapped_unprotected)(void);
    /*
     * For the step fallback (NULL when the backend needs none): whether
     * QEMU traps writes to @gfn, and lift() leaves the @n pages @gfns
     * untrapped until its next call (@n = 0 puts them back).  Vectors
     * do not change.
     */
    bool (*trapped)(uint64_t gfn);
    void (*lift)(const uint64_t *gfns, size_t n);
    /*
     * The guest RAM region behind @mr, when the backend put a region of
     * its own in the flat view over it; else @mr.  NULL: it puts none.
     */
    MemoryRegion *(*ram_of)(MemoryRegion *mr);
} SppBackendOps;

/* Use @ops from now on (before any page is protected). */
void spp_set_backend(const SppBackendOps *ops, const char *reason);

/* The guest RAM region behind @mr (see SppBackendOps.ram_of). */
MemoryRegion *spp_ram_of(MemoryRegion *mr);

/* The backend's trapped() and lift(), for the step fallback. */
bool spp_backend_trapped(uint64_t gfn);
void spp_backend_lift(const uint64_t *gfns, size_t n);

/*
 * Apply a vector to each of @n ranges, in order, all or nothing, as
 * set-subpage does (the pages must be guest RAM).
 */
bool spp_set_ranges(const SppRange *r, size_t n, Error **errp);

/* Drop the protection of pages that stopped being RAM (unplugged). */
void spp_forget_ranges(const SppRange *r, size_t n);

/* The policy a violation gets now. */
SppPolicy spp_get_policy(void);

/* Current vector of @gfn (SPP_WP_ALL when the page is not protected). */
uint32_t spp_get_vector(uint64_t gfn);

/* A run of consecutive protected pages. */
typedef struct SppRun {
    uint64_t gfn;
    uint64_t npages;
} SppRun;

/* All runs of protected pages, sorted by gfn.  Free with g_array_unref. */
GArray *spp_protected_runs(void);

/*
 * Judge a write of @size bytes at @gpa made with @attrs.  The writer is
 * the current vCPU when there is one and @attrs are not
 * MEMTXATTRS_UNSPECIFIED (which devices use), else a device.  Fills
 * @allowed[i] for each byte: true when that byte may land in guest
 * memory.  Counts the violation, emits the event and applies the policy.
 * Returns true when at least one byte was protected.
 */
bool spp_judge_write(hwaddr gpa, unsigned size, MemTxAttrs attrs,
                     bool *allowed);

/*
 * TCG bumps this before each store access of at most 8 bytes to an I/O
 * region (accel/tcg/cputlb.c).  It splits such an access into naturally
 * aligned pieces; spp_judge_write() counts one violation for them all.
 */
extern __thread uint64_t spp_tcg_store_seq;

/* Parse the -spp command line option.  Exits on error. */
void spp_parse_cmdline(const char *optarg);

/* The emulated backend on write traps, for TCG and qtest. */
extern const SppBackendOps spp_trap_ops;

/* The emulated backend on overlays, for KVM. */
extern const SppBackendOps spp_emulated_ops;



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

/*
 * Cut a page into 8-byte pieces starting at offsets @phase + 8k (the
 * first piece may be shorter), as a store whose first byte in the page
 * is at an offset equal to @phase modulo 8 is cut into accesses.  For
 * each piece in which a byte of a sub-page @wp protects differs between
 * @before and @after, call @fn with the offset and length of those
 * bytes (first to last).  Returns the calls made.
 */
typedef void SppDiffFn(unsigned offset, unsigned len, void *opaque);
unsigned spp_diff_page(const uint8_t *before, const uint8_t *after,
                       uint32_t wp, unsigned phase, SppDiffFn *fn,
                       void *opaque);

#endif
