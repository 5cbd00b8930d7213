/*
 * Sub-page write protection (SPP): the interface of its backends
 *
 * What the core (system/spp/spp.c) offers the code that enforces the
 * vectors, and what a backend implements.  Monitors, accelerators and
 * devices use system/spp.h only.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SYSTEM_SPP_BACKEND_H
#define SYSTEM_SPP_BACKEND_H

#include "exec/memory.h"
#include "system/spp.h"

/* Most pages one memory_region_find() covers when walking a range. */
#define SPP_FIND_MAX_PAGES  (1ULL << 40)

/*
 * Walk [@gfn, @gfn + @npages) of system memory section by section:
 * @fn gets the section that starts at page @gfn (s->mr NULL when none
 * does) and @npages, the pages of it within the range (0 when none),
 * and returns how many pages it handled (at least 1) or 0 to stop.
 * Returns false when @fn stopped the walk.
 */
typedef uint64_t SppSectionFn(uint64_t gfn, uint64_t npages,
                              MemoryRegionSection *s, void *opaque);
bool spp_for_each_section(uint64_t gfn, uint64_t npages, SppSectionFn *fn,
                          void *opaque);

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
    /* Number of memory regions (or slots) the backend uses; NULL: none. */
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
} SppBackendOps;

/* Use @ops from now on (before any page is protected). */
void spp_set_backend(const SppBackendOps *ops, const char *reason);

/*
 * The core's lock (see system/spp/spp.c): backends take it around the state
 * their write handler reads without the BQL, and the write-trap
 * facility holds it around each judgement and the store it allows.
 * Never held while calling into a backend or changing traps.
 */
void spp_lock(void);
void spp_unlock(void);


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

/* A run of consecutive protected pages. */
typedef struct SppRun {
    uint64_t gfn;
    uint64_t npages;
} SppRun;

/* All runs of protected pages, sorted by gfn.  Free with g_array_unref. */
GArray *spp_protected_runs(void);

/* The emulated backend, on write traps. */
extern const SppBackendOps spp_trap_ops;


/*
 * Writers of guest RAM that SPP cannot judge (spp-writers.c): vhost and
 * VFIO devices, and the paravirtual areas an accelerator writes itself.
 * All with the BQL held.
 */

/*
 * Before @n ranges are applied by a monitor request: with the
 * "unenforced" setting "refuse", fail, naming the writer, when a range
 * that protects something could be written by such a writer.
 */
bool spp_writers_check(const SppRange *r, size_t n, Error **errp);

/* After a change of the vectors: send SPP_WRITERS if the list changed. */
void spp_writers_update(void);

/* The list as query-spp gives it. */
SppWriterList *spp_writers_list(void);

SppUnenforced spp_get_unenforced(void);
void spp_set_unenforced(SppUnenforced unenforced);

/* One paravirtual area an accelerator writes in guest RAM. */
typedef struct SppPvArea {
    const char *feature;         /* "kvmclock", as in SppWriter's id */
    const char *what;            /* for people */
    const char *remedy;          /* for people */
    uint64_t gpa;
    uint64_t size;
} SppPvArea;

#define SPP_PV_MAX_AREAS 12

/*
 * Read the areas @cpu has enabled now into @areas (at most
 * SPP_PV_MAX_AREAS); runs on @cpu's thread.  Returns how many.
 */
typedef unsigned SppPvReadFn(CPUState *cpu, SppPvArea *areas);

/* Installed by the accelerator that has such areas (KVM on x86). */
void spp_writers_set_pv_reader(SppPvReadFn *fn);

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

/*
 * spp_judge_write() for a write of at most 8 bytes, as the mask of the
 * bytes that may land (bit i: byte i), for memory_region_ram_write_masked().
 * Called with spp_lock() held, which the caller keeps until the allowed
 * bytes are stored.
 */
uint8_t spp_judge_write_mask(hwaddr gpa, unsigned size, MemTxAttrs attrs,
                             uint64_t data, uintptr_t ra);

/*
 * Who a vCPU writer is, for SPP_VIOLATION: the linear address of the
 * storing instruction (only when it is known exactly), the privilege
 * level it ran at and the root of its page tables (when paging is on).
 */
typedef struct SppCpuWriter {
    bool has_pc;
    uint64_t pc;
    bool has_ring;
    uint8_t ring;
    bool has_pt_root;
    uint64_t pt_root;
} SppCpuWriter;

/*
 * Fill @w for the vCPU @cpu, which is making a write that violates
 * (on its own thread, with the core's lock held); @ra is the TCG store
 * access's host return address, or 0.  Returns false when the reader
 * does not serve the accelerator in use.
 */
typedef bool SppWriterReadFn(CPUState *cpu, uintptr_t ra, SppCpuWriter *w);

/* Installed by target code (one for TCG, one for KVM, at most). */
void spp_add_writer_reader(SppWriterReadFn *fn);

/*
 * The QOM path of the device whose write through its own address space
 * is being made on this thread (spp-dma-writer.c: PCI devices), or NULL.
 * From any thread; free with g_free().
 */
char *spp_dma_writer(void);

#endif
