/*
 * _pdqindex: an exact in-memory index of 256-bit PDQ fingerprints (compiled core).
 *
 * Exactness rests on one invariant, checked nowhere else: every live item is in
 * exactly one of three places, under its current fingerprint:
 *   TABLED    the multi-index tables hold it (one entry per table, under its key);
 *   GROUPED   a group (a dense cluster of near-duplicates) lists it, and in every
 *             table the group is registered under this item's key;
 *   OVERFLOW  the overflow list, which every query scans linearly.
 *
 * Layout (spec/parts/matching.md has the prose and the figures):
 *   fp[id*32 .. id*32+32)  the fingerprint of item `id`, its bits PERMUTED by the
 *                          partition (stored bit p = input bit perm[p]); Hamming
 *                          distance does not change under a permutation, and each
 *                          table's bits become one contiguous range.
 *   flags[id], tags[id]    LIVE / TABLED / OVERFLOW / GROUPED / TAIL; the caller's tag
 *                          (e.g. the followed log), which picks the threshold.
 *   table t                bits [start_t, start_t + width_t) form the key; the entries
 *                          whose key is k are ids[off[k] .. off[k+1]): an item id, a
 *                          group (GROUP_BIT | g) or a HOLE (an entry taken back).
 *   group g                a centre, a radius bounding every member's distance to it,
 *                          and its members sorted by that distance: a query learns how
 *                          many members are within its threshold from one distance
 *                          (triangle inequality) unless the threshold cuts the group.
 *
 * Search with threshold T picks a radius rho_t for some tables with
 * sum over the chosen tables of (rho_t + 1) >= T + 1. By pigeonhole, any fingerprint
 * within T of the query has, in at least one chosen table, a key within rho_t of the
 * query's key: probing every key within rho_t in every chosen table reaches the item,
 * or the group that lists it. An item is reported only from the first chosen table
 * where it qualifies (no "visited" set); groups are deduplicated per query.
 *
 * Removal clears LIVE at once (tables and groups keep a tombstone until the next
 * rebuild); adds go to the overflow list and are merged in bulk, joining a group when
 * one is near. Concurrency: searches take a read lock and run without the GIL
 * (batches on several threads); changes take the write lock.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __linux__
#include <sys/mman.h>
#endif

#define FP_BYTES 32
#define FP_BITS 256
#define MAX_TABLES 32
#define MIN_WIDTH 4
#define MAX_WIDTH 26
#define MAX_RHO 4            /* largest radius probed in one table; beyond, scan */
#define MAX_THRESHOLD 256
#define MAX_ID 0x7FFFFFFEu   /* the top bit of a table entry marks a group */
#define GROUP_BIT 0x80000000u
#define HOLE 0xFFFFFFFFu     /* a table entry taken back (its item joined a group or changed) */

#define F_LIVE 1u     /* the item is in the index */
#define F_TABLED 2u   /* the tables hold the item under its current fingerprint */
#define F_OVERFLOW 4u /* the item is listed in the overflow list */
#define F_GROUPED 8u  /* a group lists the item under its current fingerprint */
#define F_TAIL 16u    /* ... in the unsorted tail of its member list */

/* Groups: dense clusters of near-duplicates (spec/parts/matching.md, "Groups"). */
#define GROUP_RADIUS 8   /* every member within this distance of its group's centre */
#define GROUP_MIN 16     /* fewest members that make a group */
#define HEAVY_MIN 32     /* a bucket holding this many items is examined for a cluster */
#define CENTRE_SAMPLE 4096
#define POSTINGS_MIN 1024 /* groups this large keep, per flipped bit, the members that flip it */
#define HOLES_SQUEEZE 4096 /* more items than this leave the tables: squeeze them out, no holes */

/* Data-aware partition and planner calibration. */
#define PARTITION_MIN 4096 /* fewer live items: bits stay in their order */
#define SAMPLE_MAX 16384   /* items sampled for the bit statistics */
#define CALIBRATION_QUERIES 128
#define PIPELINE 64 /* candidates whose fingerprints are being fetched while older ones are checked */

/* Cost model of the planner, in nanoseconds, measured on a 2-core Xeon at 10M. */
#define COST_PROBE 14.0
#define COST_CANDIDATE 9.0
#define COST_SCAN 1.1

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* A popcnt build and a portable one; the loader picks by CPU (no -march needed). */
#define HOT __attribute__((target_clones("popcnt", "default")))
#else
#define HOT
#endif

/* ------------------------------------------------------------------ memory */

/* A growable byte buffer. Big ones are anonymous mappings (zero-filled, grown with
 * mremap without copying, and eligible for transparent huge pages, which matters:
 * every probe is a random access into hundreds of megabytes). */
typedef struct {
    void *p;
    size_t bytes;
    int mapped;
} Buf;

#define MAP_THRESHOLD (1u << 21)

static int buf_resize(Buf *b, size_t bytes)
{
    if (bytes == b->bytes)
        return 0;
    if (bytes == 0) {
#ifdef __linux__
        if (b->mapped)
            munmap(b->p, b->bytes);
        else
#endif
            free(b->p);
        b->p = NULL;
        b->bytes = 0;
        b->mapped = 0;
        return 0;
    }
#ifdef __linux__
    if (bytes >= MAP_THRESHOLD) {
        void *p;
        if (b->mapped) {
            p = mremap(b->p, b->bytes, bytes, MREMAP_MAYMOVE);
            if (p == MAP_FAILED)
                return -1;
        } else {
            p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED)
                return -1;
            if (b->p) {
                memcpy(p, b->p, b->bytes < bytes ? b->bytes : bytes);
                free(b->p);
            }
        }
#ifdef MADV_HUGEPAGE
        madvise(p, bytes, MADV_HUGEPAGE);
#endif
        b->p = p;
        b->bytes = bytes;
        b->mapped = 1;
        return 0;
    }
    if (b->mapped) {
        void *p = malloc(bytes);
        if (!p)
            return -1;
        memcpy(p, b->p, bytes);
        munmap(b->p, b->bytes);
        b->p = p;
        b->bytes = bytes;
        b->mapped = 0;
        return 0;
    }
#endif
    void *p = realloc(b->p, bytes);
    if (!p)
        return -1;
    if (bytes > b->bytes)
        memset((char *)p + b->bytes, 0, bytes - b->bytes);
    b->p = p;
    b->bytes = bytes;
    return 0;
}

static void buf_free(Buf *b) { buf_resize(b, 0); }

/* A small growable array for scratch space. */
static int grow(void **p, size_t *cap, size_t need, size_t item)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * item);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_int_ptr(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------ bits */

static inline uint64_t load64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
#endif
}

static inline void store64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Bits [start, start+width) of a fingerprint; bit i is bit (i % 8) of byte i / 8. */
static inline uint32_t chunk_of(const uint8_t *fp, int start, int width)
{
    int byte = start >> 3;
    if (byte > FP_BYTES - 8)
        byte = FP_BYTES - 8;
    int shift = start - byte * 8;
    return (uint32_t)((load64(fp + byte) >> shift) & ((1ull << width) - 1));
}

static inline int hamming(const uint8_t *a, const uint8_t *b)
{
    return __builtin_popcountll(load64(a) ^ load64(b)) + __builtin_popcountll(load64(a + 8) ^ load64(b + 8)) +
           __builtin_popcountll(load64(a + 16) ^ load64(b + 16)) + __builtin_popcountll(load64(a + 24) ^ load64(b + 24));
}

static inline int popcount32(uint32_t x) { return __builtin_popcount(x); }

static double binomial(int n, int k)
{
    if (k < 0 || k > n)
        return 0;
    double r = 1;
    for (int i = 1; i <= k; i++)
        r = r * (n - k + i) / i;
    return r;
}

/* ------------------------------------------------------------------ bit permutations */

/* Applying a permutation of the 256 bits, one byte at a time: lut[j][v] holds the
 * output bits that byte j of value v sets (256 KB; only built when the partition is
 * not the identity). */
typedef struct {
    uint64_t w[FP_BYTES][256][4];
} PermLut;

static void perm_lut_build(PermLut *lut, const uint8_t *from /* output bit p = input bit from[p] */)
{
    memset(lut, 0, sizeof *lut);
    for (int p = 0; p < FP_BITS; p++) {
        int i = from[p], j = i >> 3, b = i & 7;
        for (int v = 0; v < 256; v++)
            if (v >> b & 1)
                lut->w[j][v][p >> 6] |= 1ull << (p & 63);
    }
}

static inline void perm_apply(const PermLut *lut, const uint8_t *in, uint8_t *out)
{
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (int j = 0; j < FP_BYTES; j++) {
        const uint64_t *m = lut->w[j][in[j]];
        a |= m[0];
        b |= m[1];
        c |= m[2];
        d |= m[3];
    }
    store64(out, a);
    store64(out + 8, b);
    store64(out + 16, c);
    store64(out + 24, d);
}

/* ------------------------------------------------------------------ index */

typedef struct {
    int start, width;
    Buf off; /* uint32[2^width + 1] */
    Buf ids; /* uint32[count]: item ids, GROUP_BIT | group, or HOLE */
    size_t count;
} Table;

typedef struct {
    uint32_t *m[MAX_RHO + 1]; /* masks of `width` bits with exactly r bits set */
    size_t n[MAX_RHO + 1];
} MaskSet;

typedef struct {
    uint8_t centre[FP_BYTES]; /* stored (permuted) bit order */
    uint32_t tag;
    uint32_t radius;  /* largest distance to the centre of any member listed */
    uint32_t n_live;  /* live members */
    uint32_t live_at[GROUP_RADIUS + 1]; /* live members of the sorted part, by distance */
    uint32_t tail_live;                 /* live members of the tail */
    uint32_t *ids;    /* [0, n_sorted): by (distance, id); then the tail, in arrival order */
    uint32_t n_ids, cap_ids, n_sorted;
    uint32_t r_start[GROUP_RADIUS + 2]; /* sorted part: distance r at [r_start[r], r_start[r+1]) */
    /* Large groups only: for each class r and bit p, the members of the sorted part at
     * distance r whose bit p differs from the centre's, ids ascending:
     * post[post_off[r * 256 + p] .. post_off[r * 256 + p + 1]). */
    uint32_t *post, *post_off;
} Group;

typedef struct {
    PyObject_HEAD
    int ntables;
    Table tables[MAX_TABLES];
    MaskSet masks[MAX_WIDTH + 1];
    int auto_geometry;     /* choose widths from the item count at each rebuild */
    size_t geometry_items; /* item count the current widths were chosen for */
    int built;             /* the tables exist */

    /* data-aware partition: stored bit p = input bit perm[p] */
    int auto_partition;
    int permuted; /* perm is not the identity: lut and inverse are built */
    uint8_t perm[FP_BITS];
    PermLut *lut, *inverse;
    double partition_objective[2]; /* within-table squared correlation: bits in input order, chosen */
    int drift_checks;

    /* planner calibration: mean entries met by the probes at exactly radius r */
    int calibrated;
    double rate[MAX_TABLES][MAX_RHO + 1];

    Buf fp;             /* uint8[limit * 32], permuted */
    Buf flags;          /* uint8[limit] */
    Buf tags;           /* uint16[limit], allocated at the first non-zero tag */
    Buf group_of;       /* uint32[limit], allocated at the first group */
    size_t limit;       /* ids < limit have storage */
    Buf overflow;       /* uint32[n_overflow] */
    size_t n_overflow;
    size_t overflow_max; /* merge the overflow into the tables beyond this many */
    int deferred;        /* bulk loading: no merges until rebuild() */

    Group *groups;
    size_t n_groups, cap_groups;

    size_t n_live, n_tombstones, n_tabled, n_holes, n_grouped, n_group_tombstones;
    size_t n_merges, n_rebuilds, n_groups_formed; /* how often structures changed, for tests and benchmarks */
    uint64_t work[4]; /* queries, probes, candidates, group members read: updated atomically by searches */
    int threshold;
    pthread_rwlock_t lock;
    int lock_ready;
} Index;

static inline int tag_of(const Index *ix, uint32_t id)
{
    return ix->tags.p ? ((const uint16_t *)ix->tags.p)[id] : 0;
}

static inline const uint8_t *fp_of(const Index *ix, uint32_t id)
{
    return (const uint8_t *)ix->fp.p + (size_t)id * FP_BYTES;
}

/* A query's fingerprint in stored bit order. */
static inline void to_stored(const Index *ix, const uint8_t *in, uint8_t *out)
{
    if (ix->permuted)
        perm_apply(ix->lut, in, out);
    else
        memcpy(out, in, FP_BYTES);
}

/* ------------------------------------------------------------------ geometry and storage */

static int masks_prepare(Index *ix, int width)
{
    MaskSet *ms = &ix->masks[width];
    if (ms->m[0])
        return 0;
    for (int r = 0; r <= MAX_RHO; r++) {
        size_t n = (size_t)binomial(width, r);
        ms->m[r] = malloc((n ? n : 1) * sizeof(uint32_t));
        if (!ms->m[r])
            return -1;
        ms->n[r] = 0;
    }
    /* Gosper's hack enumerates the masks of each weight in increasing order. */
    for (int r = 0; r <= MAX_RHO && r <= width; r++) {
        if (r == 0) {
            ms->m[0][ms->n[0]++] = 0;
            continue;
        }
        uint64_t v = (1ull << r) - 1, top = 1ull << width;
        while (v < top) {
            ms->m[r][ms->n[r]++] = (uint32_t)v;
            uint64_t c = v & -v, rr = v + c;
            v = (((rr ^ v) >> 2) / c) | rr;
        }
    }
    return 0;
}

static void set_geometry(Index *ix, const int *widths, int n)
{
    int start = 0;
    ix->ntables = n;
    for (int t = 0; t < n; t++) {
        ix->tables[t].start = start;
        ix->tables[t].width = widths[t];
        start += widths[t];
    }
}

/* Widths for about `items` fingerprints: tables of ~log2(items) bits, so that a
 * bucket holds about one item, capped at 24 bits (64 MB of offsets per table). */
static int auto_widths(size_t items, int *widths)
{
    int w = 1;
    while (w < 63 && ((size_t)1 << w) <= items)
        w++; /* w = floor(log2(items)) + 1 */
    if (w < 13)
        w = 13;
    if (w > 24)
        w = 24;
    int m = (FP_BITS + w - 1) / w;
    int base = FP_BITS / m, extra = FP_BITS % m;
    for (int t = 0; t < m; t++)
        widths[t] = base + (t < extra ? 1 : 0);
    return m;
}

static int ensure_limit(Index *ix, uint32_t id)
{
    if (id < ix->limit)
        return 0;
    size_t want = (size_t)id + 1;
    size_t cap = ix->limit + ix->limit / 4 + 1024;
    if (cap < want)
        cap = want;
    if (buf_resize(&ix->fp, cap * FP_BYTES) < 0 || buf_resize(&ix->flags, cap) < 0)
        return -1;
    if (ix->tags.p && buf_resize(&ix->tags, cap * sizeof(uint16_t)) < 0)
        return -1;
    if (ix->group_of.p && buf_resize(&ix->group_of, cap * sizeof(uint32_t)) < 0)
        return -1;
    ix->limit = cap;
    return 0;
}

static int ensure_tags(Index *ix)
{
    if (ix->tags.p || !ix->limit)
        return 0;
    return buf_resize(&ix->tags, ix->limit * sizeof(uint16_t));
}

static void free_tables(Index *ix)
{
    for (int t = 0; t < MAX_TABLES; t++) {
        buf_free(&ix->tables[t].off);
        buf_free(&ix->tables[t].ids);
        ix->tables[t].count = 0;
    }
    ix->built = 0;
    ix->calibrated = 0;
}

static inline uint32_t table_key(const Index *ix, int t, const uint8_t *stored)
{
    return chunk_of(stored, ix->tables[t].start, ix->tables[t].width);
}

/* ------------------------------------------------------------------ groups: members */

static inline uint32_t *group_of(const Index *ix) { return (uint32_t *)ix->group_of.p; }

static inline int member_distance(const Index *ix, const Group *g, uint32_t id)
{
    return hamming(fp_of(ix, id), g->centre);
}

/* Is `id` listed by group `g` under its current fingerprint? (Member lists keep
 * tombstones and may hold ids that left; this says which entries count.) */
static inline int is_member(const Index *ix, uint32_t g, uint32_t id)
{
    const uint8_t *flags = ix->flags.p;
    return (flags[id] & F_GROUPED) && group_of(ix)[id] == g;
}

static void free_postings(Group *g)
{
    free(g->post);
    free(g->post_off);
    g->post = g->post_off = NULL;
}

/* The postings of a large group's sorted part (see Group). */
static int build_postings(const Index *ix, Group *g)
{
    free_postings(g);
    if (g->n_sorted < POSTINGS_MIN)
        return 0;
    size_t classes = (size_t)(GROUP_RADIUS + 1) * FP_BITS;
    g->post_off = calloc(classes + 1, sizeof(uint32_t));
    if (!g->post_off)
        return -1;
    for (int pass = 0; pass < 2; pass++) {
        for (int r = 0; r <= GROUP_RADIUS; r++)
            for (uint32_t i = g->r_start[r]; i < g->r_start[r + 1]; i++) {
                const uint8_t *x = fp_of(ix, g->ids[i]);
                for (int w = 0; w < 4; w++) {
                    uint64_t diff = load64(x + 8 * w) ^ load64(g->centre + 8 * w);
                    while (diff) {
                        size_t slot = (size_t)r * FP_BITS + 64 * w + (size_t)__builtin_ctzll(diff);
                        if (pass == 0)
                            g->post_off[slot + 1]++;
                        else
                            g->post[g->post_off[slot]++] = g->ids[i];
                        diff &= diff - 1;
                    }
                }
            }
        if (pass == 0) {
            for (size_t c = 0; c < classes; c++)
                g->post_off[c + 1] += g->post_off[c];
            if (!(g->post = malloc((g->post_off[classes] ? g->post_off[classes] : 1) * sizeof(uint32_t)))) {
                free_postings(g);
                return -1;
            }
        }
    }
    /* the fill moved each start to the next one's: shift back */
    memmove(g->post_off + 1, g->post_off, classes * sizeof(uint32_t));
    g->post_off[0] = 0;
    return 0;
}

/* Sort the whole member list by (distance, id): the tail joins the sorted part;
 * entries that no longer belong are dropped, and with them dead members when
 * `drop_dead` (a rebuild: nobody can revive them in place any more). */
static int group_sort(Index *ix, uint32_t gi, int drop_dead)
{
    Group *g = &ix->groups[gi];
    uint8_t *flags = ix->flags.p;
    uint64_t *keys = malloc((g->n_ids ? g->n_ids : 1) * sizeof(uint64_t));
    if (!keys)
        return -1;
    size_t n = 0;
    for (uint32_t i = 0; i < g->n_ids; i++) {
        uint32_t id = g->ids[i];
        if (!is_member(ix, gi, id))
            continue;
        if (drop_dead && !(flags[id] & F_LIVE)) {
            flags[id] &= ~(F_GROUPED | F_TAIL);
            ix->n_group_tombstones--;
            continue;
        }
        flags[id] &= ~F_TAIL;
        keys[n++] = (uint64_t)member_distance(ix, g, id) << 32 | id;
    }
    qsort(keys, n, sizeof(uint64_t), cmp_u64);
    memset(g->live_at, 0, sizeof g->live_at);
    memset(g->r_start, 0, sizeof g->r_start);
    g->tail_live = 0;
    g->radius = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = (uint32_t)keys[i], r = (uint32_t)(keys[i] >> 32);
        g->ids[i] = id;
        g->r_start[r + 1]++;
        if (flags[id] & F_LIVE)
            g->live_at[r]++;
        if (r > g->radius)
            g->radius = r;
    }
    g->n_live = 0;
    for (int r = 0; r <= GROUP_RADIUS; r++) {
        g->r_start[r + 1] += g->r_start[r];
        g->n_live += g->live_at[r];
    }
    g->n_ids = g->n_sorted = (uint32_t)n;
    free(keys);
    return build_postings(ix, g);
}

static int group_append(Group *g, uint32_t id)
{
    if (g->n_ids == g->cap_ids) {
        uint32_t cap = g->cap_ids ? g->cap_ids * 2 : 32;
        uint32_t *p = realloc(g->ids, (size_t)cap * sizeof(uint32_t));
        if (!p)
            return -1;
        g->ids = p;
        g->cap_ids = cap;
    }
    g->ids[g->n_ids++] = id;
    return 0;
}

/* A live item joins group gi (it is in no other structure): into the tail. */
static int group_attach(Index *ix, uint32_t gi, uint32_t id)
{
    Group *g = &ix->groups[gi];
    if (group_append(g, id) < 0)
        return -1;
    uint8_t *flags = ix->flags.p;
    flags[id] = (uint8_t)((flags[id] & ~(F_TABLED | F_OVERFLOW)) | F_GROUPED | F_TAIL);
    group_of(ix)[id] = gi;
    uint32_t r = (uint32_t)member_distance(ix, g, id);
    if (r > g->radius)
        g->radius = r;
    g->n_live++;
    g->tail_live++;
    ix->n_grouped++;
    if (g->n_ids - g->n_sorted > 64 && g->n_ids - g->n_sorted > g->n_sorted / 4)
        return group_sort(ix, gi, 0);
    return 0;
}

/* A member stops or starts counting (removal, or re-added as it was). */
static void group_count(Index *ix, uint32_t id, int delta)
{
    Group *g = &ix->groups[group_of(ix)[id]];
    const uint8_t *flags = ix->flags.p;
    if (flags[id] & F_TAIL)
        g->tail_live += delta;
    else
        g->live_at[member_distance(ix, g, id)] += delta;
    g->n_live += delta;
}

/* The item leaves its group for good (its fingerprint changes): out of the list. */
static void group_detach(Index *ix, uint32_t id)
{
    uint8_t *flags = ix->flags.p;
    uint32_t gi = group_of(ix)[id];
    Group *g = &ix->groups[gi];
    if (flags[id] & F_LIVE) {
        group_count(ix, id, -1);
        ix->n_grouped--;
    } else {
        ix->n_group_tombstones--;
    }
    for (uint32_t i = 0; i < g->n_ids; i++) {
        if (g->ids[i] != id)
            continue;
        memmove(g->ids + i, g->ids + i + 1, (g->n_ids - i - 1) * sizeof(uint32_t));
        g->n_ids--;
        if (i < g->n_sorted) {
            g->n_sorted--;
            for (int r = 0; r <= GROUP_RADIUS; r++)
                if (g->r_start[r + 1] > i)
                    g->r_start[r + 1]--;
        }
        break;
    }
    flags[id] &= ~(F_GROUPED | F_TAIL);
}

/* ------------------------------------------------------------------ tables */

/* The keys under which group gi is registered in table t: its centre's and every
 * listed member's (live or not: a tombstone may come back), sorted and unique. */
static int group_keys(const Index *ix, uint32_t gi, int t, uint32_t **keys, size_t *cap, size_t *n_out)
{
    const Group *g = &ix->groups[gi];
    if (grow((void **)keys, cap, (size_t)g->n_ids + 1, sizeof(uint32_t)) < 0)
        return -1;
    size_t n = 0;
    (*keys)[n++] = table_key(ix, t, g->centre);
    for (uint32_t i = 0; i < g->n_ids; i++)
        if (is_member(ix, gi, g->ids[i]))
            (*keys)[n++] = table_key(ix, t, fp_of(ix, g->ids[i]));
    qsort(*keys, n, sizeof(uint32_t), cmp_u32);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || (*keys)[i] != (*keys)[u - 1])
            (*keys)[u++] = (*keys)[i];
    *n_out = u;
    return 0;
}

/* Counting sort of the table's entries by key: every live item that is in no group,
 * then every group under each of its keys. The items' keys of the first pass are kept
 * (4 bytes per item) so that the second pass reads them instead of every fingerprint
 * again, and can prefetch the offsets it is about to bump. */
static int build_table(Index *ix, int t)
{
    Table *tb = &ix->tables[t];
    size_t nb = (size_t)1 << tb->width;
    buf_free(&tb->off);
    buf_free(&tb->ids);
    if (buf_resize(&tb->off, (nb + 1) * sizeof(uint32_t)) < 0)
        return -1;
    size_t singles = ix->n_live - ix->n_grouped;
    Buf keybuf = {0};
    if (singles && buf_resize(&keybuf, singles * sizeof(uint32_t)) < 0)
        return -1;
    uint32_t *off = tb->off.p, *keys = keybuf.p;
    const uint8_t *flags = ix->flags.p;
    size_t count = 0;
    for (size_t id = 0; id < ix->limit && count < singles; id++)
        if ((flags[id] & (F_LIVE | F_GROUPED)) == F_LIVE) {
            uint32_t k = table_key(ix, t, fp_of(ix, (uint32_t)id));
            keys[count++] = k;
            off[k + 1]++;
        }
    /* group registrations: (key, group) pairs, kept for the second pass */
    uint64_t *regs = NULL;
    size_t n_regs = 0, regs_cap = 0, gk_cap = 0, gk_n;
    uint32_t *gk = NULL;
    int failed = 0;
    for (uint32_t g = 0; g < ix->n_groups && !failed; g++) {
        if (group_keys(ix, g, t, &gk, &gk_cap, &gk_n) < 0 || grow((void **)&regs, &regs_cap, n_regs + gk_n, 8) < 0) {
            failed = 1;
            break;
        }
        for (size_t i = 0; i < gk_n; i++) {
            regs[n_regs++] = (uint64_t)gk[i] << 32 | (GROUP_BIT | g);
            off[gk[i] + 1]++;
        }
    }
    free(gk);
    size_t total = count + n_regs;
    if (!failed && total && buf_resize(&tb->ids, total * sizeof(uint32_t)) < 0)
        failed = 1;
    if (failed) {
        free(regs);
        buf_free(&keybuf);
        return -1;
    }
    for (size_t k = 0; k < nb; k++)
        off[k + 1] += off[k];
    uint32_t *ids = tb->ids.p;
    /* off[k] walks from the start of bucket k to its end, which is the start of k+1 */
    size_t j = 0;
    for (size_t id = 0; j < count; id++)
        if ((flags[id] & (F_LIVE | F_GROUPED)) == F_LIVE) {
            if (j + 16 < count)
                __builtin_prefetch(off + keys[j + 16], 1);
            ids[off[keys[j]]++] = (uint32_t)id;
            j++;
        }
    for (size_t i = 0; i < n_regs; i++)
        ids[off[regs[i] >> 32]++] = (uint32_t)regs[i];
    free(regs);
    buf_free(&keybuf);
    memmove(off + 1, off, nb * sizeof(uint32_t));
    off[0] = 0;
    tb->count = total;
    return 0;
}

/* Work on every table, shared by up to `nthreads` threads (one table at a time each):
 * `each(ix, t, ctx)` for every t; -1 if any call failed. */
typedef int (*TableTask)(Index *ix, int t, void *ctx);

typedef struct {
    Index *ix;
    TableTask each;
    void *ctx;
    int next; /* shared table cursor */
    int failed;
} TableJob;

static void *table_worker(void *arg)
{
    TableJob *job = arg;
    for (;;) {
        int t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (t >= job->ix->ntables)
            break;
        if (job->each(job->ix, t, job->ctx) < 0)
            __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static int on_tables(Index *ix, int nthreads, TableTask each, void *ctx)
{
    TableJob job = {ix, each, ctx, 0, 0};
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > ix->ntables)
        nthreads = ix->ntables;
    pthread_t th[16];
    int started = 0;
    for (int i = 1; i < nthreads && i < 16; i++)
        if (pthread_create(&th[started], NULL, table_worker, &job) == 0)
            started++;
    table_worker(&job);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    return job.failed ? -1 : 0;
}

static int build_task(Index *ix, int t, void *ctx)
{
    (void)ctx;
    return build_table(ix, t);
}

/* ------------------------------------------------------------------ merging into the tables */

typedef struct {
    uint32_t key, value;
} KeyVal;

static int cmp_keyval(const void *a, const void *b)
{
    const KeyVal *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key ? 1 : (x->value < y->value ? -1 : x->value > y->value);
}

/* Merge sorted (key, value) pairs into table t in place: old buckets move up from the
 * top down with memmove (sequential traffic, no allocation beyond growing the array). */
static int merge_pairs(Index *ix, int t, const KeyVal *pairs, size_t m)
{
    Table *tb = &ix->tables[t];
    size_t n = tb->count;
    if (m == 0)
        return 0;
    if (buf_resize(&tb->ids, (n + m) * sizeof(uint32_t)) < 0)
        return -1;
    uint32_t *ids = tb->ids.p, *off = tb->off.p;
    size_t nb = (size_t)1 << tb->width;
    size_t end = n; /* old entries [x, end) still to be moved */
    size_t j = m;   /* new entries [0, j) still to be placed */
    while (j > 0) {
        uint32_t k = pairs[j - 1].key;
        size_t g = j; /* group [g, j) has key k */
        while (g > 0 && pairs[g - 1].key == k)
            g--;
        size_t from = off[k + 1]; /* old buckets above k: [from, end) shift by j */
        memmove(ids + from + j, ids + from, (end - from) * sizeof(uint32_t));
        for (size_t i = g; i < j; i++) /* the group goes after bucket k's old entries */
            ids[from + g + (i - g)] = pairs[i].value;
        end = from;
        j = g;
    }
    /* off[b] grows by the number of new entries with key < b (plain loops: vectorized) */
    size_t b = 0, below = 0;
    for (size_t i = 0; i < m;) {
        uint32_t k = pairs[i].key;
        for (; b <= k; b++)
            off[b] += (uint32_t)below;
        while (i < m && pairs[i].key == k)
            i++, below++;
    }
    for (; b <= nb; b++)
        off[b] += (uint32_t)below;
    tb->count = n + m;
    return 0;
}

/* New entries for every table: item ids (keys computed per table) and, per table,
 * group registrations. */
typedef struct {
    const uint32_t *items;
    size_t n_items;
    KeyVal **regs; /* per table, may be NULL */
    size_t *n_regs;
} NewEntries;

static int merge_task(Index *ix, int t, void *ctx)
{
    const NewEntries *new = ctx;
    size_t nr = new->regs ? new->n_regs[t] : 0, m = new->n_items + nr;
    KeyVal *pairs = malloc((m ? m : 1) * sizeof(KeyVal));
    if (!pairs)
        return -1;
    for (size_t i = 0; i < new->n_items; i++) {
        pairs[i].key = table_key(ix, t, fp_of(ix, new->items[i]));
        pairs[i].value = new->items[i];
    }
    if (nr)
        memcpy(pairs + new->n_items, new->regs[t], nr * sizeof(KeyVal));
    qsort(pairs, m, sizeof(KeyVal), cmp_keyval);
    int rc = merge_pairs(ix, t, pairs, m);
    free(pairs);
    return rc;
}

static int merge_entries(Index *ix, const uint32_t *items, size_t n_items, KeyVal **regs, size_t *n_regs,
                         int nthreads)
{
    NewEntries new = {items, n_items, regs, n_regs};
    if (on_tables(ix, nthreads, merge_task, &new) < 0) {
        /* Half-merged tables are useless: drop them, and searches scan every live item
         * (correct, slow) until a rebuild succeeds. */
        free_tables(ix);
        return -1;
    }
    return 0;
}

/* Take back the table entries of `items` (sorted ids), under the keys of their
 * current fingerprints: each becomes a HOLE, which searches skip. */
static void punch_holes(Index *ix, const uint32_t *items, size_t n)
{
    if (!ix->built)
        return; /* the tables were dropped (out of memory): nothing holds the items */
    uint32_t *keys = malloc((n ? n : 1) * sizeof(uint32_t));
    if (!keys) { /* cannot happen in practice; the entries then stay, and are skipped by flags */
        return;
    }
    for (int t = 0; t < ix->ntables; t++) {
        Table *tb = &ix->tables[t];
        uint32_t *off = tb->off.p, *ids = tb->ids.p, last = HOLE;
        /* buckets of the items, each visited once (several items share buckets) */
        for (size_t i = 0; i < n; i++)
            keys[i] = table_key(ix, t, fp_of(ix, items[i]));
        qsort(keys, n, sizeof(uint32_t), cmp_u32);
        for (size_t i = 0; i < n; i++) {
            if (keys[i] == last)
                continue;
            last = keys[i];
            for (uint32_t j = off[last]; j < off[last + 1]; j++) {
                uint32_t v = ids[j];
                if (!(v & GROUP_BIT) && bsearch(&v, items, n, sizeof(uint32_t), cmp_u32)) {
                    ids[j] = HOLE;
                    ix->n_holes++;
                }
            }
        }
    }
    free(keys);
}

/* Drop every entry that no longer counts (holes, items that left the tables) in one
 * sequential pass per table (two threads). */
static int squeeze_task(Index *ix, int t, void *ctx)
{
    (void)ctx;
    Table *tb = &ix->tables[t];
    uint32_t *off = tb->off.p, *ids = tb->ids.p;
    const uint8_t *flags = ix->flags.p;
    size_t nb = (size_t)1 << tb->width, w = 0;
    uint32_t begin = 0;
    for (size_t k = 0; k < nb; k++) {
        uint32_t end = off[k + 1];
        off[k] = (uint32_t)w;
        for (uint32_t j = begin; j < end; j++) {
            uint32_t v = ids[j];
            if (v & GROUP_BIT ? v != HOLE : (flags[v] & F_TABLED) != 0)
                ids[w++] = v;
        }
        begin = end;
    }
    off[nb] = (uint32_t)w;
    tb->count = w;
    return 0;
}

static void squeeze_tables(Index *ix)
{
    if (!ix->built)
        return;
    on_tables(ix, 2, squeeze_task, NULL);
    ix->n_holes = 0;
}

/* ------------------------------------------------------------------ planning */

typedef struct {
    int scan;
    int adaptive; /* chosen again for each query from its own buckets (mode auto) */
    int rho[MAX_TABLES]; /* -1: table not probed */
    double cost;
} Plan;

/* Estimated cost of probing table t at exactly radius r: C(width, r) probes and the
 * entries they meet, as measured on the data at the last rebuild (calibration), or,
 * before that, as if keys were uniform. */
static double step_cost(const Index *ix, int t, int r, const double *density)
{
    const Table *tb = &ix->tables[t];
    double probes = binomial(tb->width, r);
    double entries = ix->calibrated ? ix->rate[t][r]
                                    : probes * (double)tb->count / (double)((size_t)1 << tb->width);
    return probes * COST_PROBE + entries * (density ? density[t] : 1.0) * COST_CANDIDATE;
}

/* Radii with sum(rho_t + 1) >= threshold + 1 at the least estimated cost. The step
 * costs grow with rho, so taking the cheapest step each time is optimal. `density`
 * (or NULL) scales each table's entries for one query (see adapt_plan). */
static void plan_radii(const Index *ix, int threshold, int mode, const double *density, Plan *plan)
{
    double scan_cost = COST_SCAN * (double)ix->limit;
    double cost = 0;
    int have = 0, ok = ix->built && ix->ntables > 0;
    for (int t = 0; t < MAX_TABLES; t++)
        plan->rho[t] = -1;
    while (ok && have < threshold + 1) {
        int best = -1;
        double best_cost = 0;
        for (int t = 0; t < ix->ntables; t++) {
            int r = plan->rho[t] + 1;
            if (r > MAX_RHO || r > ix->tables[t].width)
                continue;
            double c = step_cost(ix, t, r, density);
            if (best < 0 || c < best_cost) {
                best = t;
                best_cost = c;
            }
        }
        if (best < 0)
            ok = 0;
        else {
            plan->rho[best]++;
            have++;
            cost += best_cost;
        }
    }
    cost += 2 * COST_SCAN * (double)ix->n_overflow;
    plan->cost = cost;
    plan->scan = mode == 2 || !ok || (mode == 0 && scan_cost < cost);
    plan->adaptive = mode == 0;
}

static void make_plan(const Index *ix, int threshold, int mode, Plan *plan)
{
    plan_radii(ix, threshold, mode, NULL, plan);
}

/* The plan for one query. On data whose keys are far from uniform, a query in a
 * dense region meets crowded buckets in some tables and sparse ones in others; its
 * own bucket in each table (one read per table, which the search makes anyway) says
 * which: the calibrated entries of table t are scaled by sqrt((b_t + 1) / (mean + 1)),
 * b_t being the query's own bucket size. (Measured on 10M correlated fingerprints:
 * 10 % fewer estimated nanoseconds per query than one plan for all, and 99 % of what
 * an oracle choosing each query's best plan saves.) Any plan is exact. */
static void adapt_plan(const Index *ix, const uint8_t *q, int threshold, Plan *plan)
{
    if (plan->scan || !ix->calibrated)
        return;
    double density[MAX_TABLES];
    uint32_t k[MAX_TABLES];
    for (int t = 0; t < ix->ntables; t++) {
        k[t] = chunk_of(q, ix->tables[t].start, ix->tables[t].width);
        __builtin_prefetch((const uint32_t *)ix->tables[t].off.p + k[t]);
    }
    for (int t = 0; t < ix->ntables; t++) {
        const uint32_t *off = ix->tables[t].off.p;
        density[t] = sqrt(((double)(off[k[t] + 1] - off[k[t]]) + 1.0) / (ix->rate[t][0] + 1.0));
    }
    plan_radii(ix, threshold, 1, density, plan);
}

/* ------------------------------------------------------------------ searching */

typedef struct {
    int tmax;           /* the largest threshold of any tag: what the plan covers */
    int tdefault;       /* the threshold of tags beyond `thr` */
    const int16_t *thr; /* per tag (negative: that tag never matches), or NULL */
    size_t n_thr;
    size_t limit; /* 0: every match; else the nearest `limit` (then by id) */
} Ask;

static inline int threshold_of(const Ask *a, int tag)
{
    return a->thr && (size_t)tag < a->n_thr ? a->thr[tag] : a->tdefault;
}

typedef struct {
    uint32_t id, dist;
} Hit;

typedef struct {
    uint32_t *keys;
    size_t keys_cap;
    uint32_t *lo, *hi;
    uint8_t *rt;
    size_t lo_cap, hi_cap, rt_cap;
    Hit *hits; /* every match (limit 0), or a max-heap of the nearest `limit` */
    size_t n_hits, hits_cap;
    uint64_t total;
    uint64_t probes, candidates, members; /* work done, for stats() */
    uint32_t *seen; /* open-addressing set of the groups met by this query (HOLE = empty) */
    size_t seen_cap;
    uint64_t *glist; /* the groups met (then sorted by lower bound << 32 | group) */
    size_t n_glist, glist_cap;
    uint32_t *ov_id; /* members sharing flipped bits with the query, ascending, and how many */
    uint8_t *ov_n;
    size_t n_ov, ov_id_cap, ov_n_cap;
} Scratch;

static void scratch_free(Scratch *s)
{
    free(s->keys);
    free(s->lo);
    free(s->hi);
    free(s->rt);
    free(s->hits);
    free(s->seen);
    free(s->glist);
    free(s->ov_id);
    free(s->ov_n);
    memset(s, 0, sizeof *s);
}

static inline int hit_less(uint32_t d1, uint32_t id1, uint32_t d2, uint32_t id2)
{
    return d1 < d2 || (d1 == d2 && id1 < id2);
}

static int cmp_hit(const void *a, const void *b)
{
    const Hit *x = a, *y = b;
    return hit_less(x->dist, x->id, y->dist, y->id) ? -1 : hit_less(y->dist, y->id, x->dist, x->id);
}

/* A match: kept (limit 0), or competing for the nearest `limit` in a max-heap. */
static inline int offer(Scratch *s, const Ask *a, uint32_t id, int d)
{
    if (!a->limit || s->n_hits < a->limit) {
        if (grow((void **)&s->hits, &s->hits_cap, s->n_hits + 1, sizeof(Hit)) < 0)
            return -1;
        size_t i = s->n_hits++;
        if (a->limit)
            while (i > 0) { /* sift up */
                size_t p = (i - 1) / 2;
                if (!hit_less(s->hits[p].dist, s->hits[p].id, (uint32_t)d, id))
                    break;
                s->hits[i] = s->hits[p];
                i = p;
            }
        s->hits[i].id = id;
        s->hits[i].dist = (uint32_t)d;
        return 0;
    }
    if (!hit_less((uint32_t)d, id, s->hits[0].dist, s->hits[0].id))
        return 0;
    size_t i = 0, n = s->n_hits; /* replace the worst, sift down */
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && hit_less(s->hits[c].dist, s->hits[c].id, s->hits[c + 1].dist, s->hits[c + 1].id))
            c++;
        if (!hit_less((uint32_t)d, id, s->hits[c].dist, s->hits[c].id))
            break;
        s->hits[i] = s->hits[c];
        i = c;
    }
    s->hits[i].id = id;
    s->hits[i].dist = (uint32_t)d;
    return 0;
}

/* Can an item at distance >= lower_bound, with this id, still enter the nearest? */
static inline int may_enter(const Scratch *s, const Ask *a, int lower_bound, uint32_t id)
{
    if (!a->limit || s->n_hits < a->limit)
        return 1;
    return hit_less((uint32_t)lower_bound, id, s->hits[0].dist, s->hits[0].id);
}

static int remember_group(Scratch *s, uint32_t g)
{
    if (s->n_glist * 2 + 2 > s->seen_cap) {
        size_t cap = s->seen_cap ? s->seen_cap * 2 : 64;
        uint32_t *seen = malloc(cap * sizeof(uint32_t));
        if (!seen)
            return -1;
        memset(seen, 0xFF, cap * sizeof(uint32_t));
        for (size_t i = 0; i < s->n_glist; i++) {
            uint32_t x = (uint32_t)s->glist[i];
            size_t h = (x * 2654435761u) & (cap - 1);
            while (seen[h] != HOLE)
                h = (h + 1) & (cap - 1);
            seen[h] = x;
        }
        free(s->seen);
        s->seen = seen;
        s->seen_cap = cap;
    }
    size_t h = (g * 2654435761u) & (s->seen_cap - 1);
    while (s->seen[h] != HOLE) {
        if (s->seen[h] == g)
            return 0;
        h = (h + 1) & (s->seen_cap - 1);
    }
    s->seen[h] = g;
    if (grow((void **)&s->glist, &s->glist_cap, s->n_glist + 1, sizeof(uint64_t)) < 0)
        return -1;
    s->glist[s->n_glist++] = g;
    return 0;
}

/* Empty the set of groups met (only the slots used, so it costs what the query met).
 * Each lookup probes until it finds its key, never stopping at an emptied slot, so
 * the order of clearing does not matter. */
static void forget_groups(Scratch *s)
{
    for (size_t i = 0; i < s->n_glist; i++) {
        uint32_t x = (uint32_t)s->glist[i];
        size_t h = (x * 2654435761u) & (s->seen_cap - 1);
        while (s->seen[h] != x)
            h = (h + 1) & (s->seen_cap - 1);
        s->seen[h] = HOLE;
    }
    s->n_glist = 0;
}

/* A member of class r of group gi, met through its postings: does it count? (Postings
 * are rebuilt only when the list is sorted again: a member that left the group, or came
 * back into its tail, is skipped here and, if it came back, checked with the tail.) */
static inline int posted_member(const Index *ix, uint32_t gi, uint32_t id)
{
    const uint8_t *flags = ix->flags.p;
    return (flags[id] & (F_LIVE | F_GROUPED | F_TAIL)) == (F_LIVE | F_GROUPED) && group_of(ix)[id] == gi;
}

/* The members of class r of group g that differ from the centre in some of the bits
 * where the query does (`bits`, n of them), each with how many such bits: s->ov_id
 * (ascending) and s->ov_n. A member in class r with o of them is at distance
 * delta + r - 2 o from the query, exactly: no fingerprint to read. A k-way merge of
 * the bits' posting lists, which are sorted by id. */
static int overlaps(const Group *g, int r, const int *bits, int n, Scratch *s)
{
    uint32_t at[FP_BITS], end[FP_BITS];
    int heap[FP_BITS], m = 0; /* a min-heap of list numbers, by their current id */
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t c = (size_t)r * FP_BITS + (size_t)bits[i];
        at[i] = g->post_off[c];
        end[i] = g->post_off[c + 1];
        total += end[i] - at[i];
        if (at[i] < end[i]) {
            int j = m++;
            while (j > 0 && g->post[at[heap[(j - 1) / 2]]] > g->post[at[i]]) {
                heap[j] = heap[(j - 1) / 2];
                j = (j - 1) / 2;
            }
            heap[j] = i;
        }
    }
    if (grow((void **)&s->ov_id, &s->ov_id_cap, total + 1, sizeof(uint32_t)) < 0 ||
        grow((void **)&s->ov_n, &s->ov_n_cap, total + 1, 1) < 0)
        return -1;
    s->n_ov = 0;
    while (m) {
        int top = heap[0];
        uint32_t id = g->post[at[top]];
        if (s->n_ov && s->ov_id[s->n_ov - 1] == id)
            s->ov_n[s->n_ov - 1]++;
        else {
            s->ov_id[s->n_ov] = id;
            s->ov_n[s->n_ov++] = 1;
        }
        if (++at[top] == end[top])
            top = heap[--m];
        /* sift the list at the root (advanced, or the last one moved up) down */
        int j = 0;
        for (;;) {
            int c = 2 * j + 1;
            if (c >= m)
                break;
            if (c + 1 < m && g->post[at[heap[c + 1]]] < g->post[at[heap[c]]])
                c++;
            if (g->post[at[heap[c]]] >= g->post[at[top]])
                break;
            heap[j] = heap[c];
            j = c;
        }
        if (m)
            heap[j] = top;
    }
    return 0;
}

/* The members of group gi within their threshold: counted by the triangle inequality
 * where a whole distance class is inside (|q - member| <= |q - centre| + |centre -
 * member|), and expanded for the nearest only while they can still enter. Where the
 * threshold cuts a class, or the nearest must be told apart inside one, a large group
 * finds the members that share flipped bits with the query through its postings
 * (their distances follow from the overlap); otherwise members are checked one by one. */
HOT static int eval_group(const Index *ix, const uint8_t *q, const Ask *a, uint32_t gi, int delta, Scratch *s)
{
    const Group *g = &ix->groups[gi];
    const uint8_t *flags = ix->flags.p;
    int T = threshold_of(a, (int)g->tag);
    if (T < 0 || delta - (int)g->radius > T)
        return 0;
    int bits[FP_BITS], nbits = 0;
    if (g->post && delta > 0) /* where the query differs from the centre */
        for (int w = 0; w < 4; w++)
            for (uint64_t diff = load64(q + 8 * w) ^ load64(g->centre + 8 * w); diff; diff &= diff - 1)
                bits[nbits++] = 64 * w + __builtin_ctzll(diff);
    for (int r = 0; r <= GROUP_RADIUS; r++) {
        uint32_t first = g->r_start[r], end = g->r_start[r + 1];
        if (first == end)
            continue;
        int lo = delta > r ? delta - r : r - delta, inside = delta + r <= T;
        if (lo > T)
            continue;
        if (inside) {
            s->total += g->live_at[r]; /* every member at distance r is within T */
            if (!may_enter(s, a, lo, 0))
                continue;
        }
        size_t posted = 0;
        for (int i = 0; i < nbits; i++)
            posted += g->post_off[(size_t)r * FP_BITS + bits[i] + 1] - g->post_off[(size_t)r * FP_BITS + bits[i]];
        if (nbits && a->limit && posted * 2 < end - first) {
            if (overlaps(g, r, bits, nbits, s) < 0)
                return -1;
            s->members += posted;
            int least = inside ? 0 : (delta + r - T + 1) / 2; /* overlap needed to be within T */
            for (size_t i = 0; i < s->n_ov; i++)
                if (s->ov_n[i] >= least && posted_member(ix, gi, s->ov_id[i])) {
                    if (!inside)
                        s->total++;
                    if (offer(s, a, s->ov_id[i], delta + r - 2 * s->ov_n[i]) < 0)
                        return -1;
                }
            if (!inside)
                continue;
            /* the others are exactly delta + r away: in id order while they can enter */
            size_t k = 0;
            for (uint32_t i = first; i < end && may_enter(s, a, delta + r, 0); i++) {
                uint32_t id = g->ids[i];
                while (k < s->n_ov && s->ov_id[k] < id)
                    k++;
                if (k < s->n_ov && s->ov_id[k] == id)
                    continue; /* offered above */
                if (!may_enter(s, a, delta + r, id))
                    break;
                if (flags[id] & F_LIVE && offer(s, a, id, delta + r) < 0)
                    return -1;
            }
            continue;
        }
        for (uint32_t i = first; i < end; i++) {
            uint32_t id = g->ids[i];
            if (inside && !may_enter(s, a, lo, id))
                break; /* ids ascend: no later member of this class can enter */
            if (!(flags[id] & F_LIVE))
                continue;
            s->members++;
            int d = hamming(fp_of(ix, id), q);
            if (inside || d <= T) {
                s->total += !inside;
                if (offer(s, a, id, d) < 0)
                    return -1;
            }
        }
    }
    for (uint32_t i = g->n_sorted; i < g->n_ids; i++) {
        uint32_t id = g->ids[i];
        if ((flags[id] & F_LIVE) && is_member(ix, gi, id)) {
            s->members++;
            int d = hamming(fp_of(ix, id), q);
            if (d <= T) {
                s->total++;
                if (offer(s, a, id, d) < 0)
                    return -1;
            }
        }
    }
    return 0;
}

static int eval_groups(const Index *ix, const uint8_t *q, const Ask *a, Scratch *s)
{
    if (!s->n_glist)
        return 0;
    /* nearest groups first: their members fill the nearest before far ones are expanded */
    for (size_t i = 0; i < s->n_glist; i++) {
        uint32_t g = (uint32_t)s->glist[i];
        int lb = hamming(q, ix->groups[g].centre) - (int)ix->groups[g].radius;
        s->glist[i] = (uint64_t)(lb < 0 ? 0 : lb) << 32 | g;
    }
    qsort(s->glist, s->n_glist, sizeof(uint64_t), cmp_u64);
    int rc = 0;
    for (size_t i = 0; i < s->n_glist && rc == 0; i++) {
        uint32_t g = (uint32_t)s->glist[i];
        rc = eval_group(ix, q, a, g, hamming(q, ix->groups[g].centre), s);
    }
    forget_groups(s);
    return rc;
}

HOT static int search_scan(const Index *ix, const uint8_t *q, const Ask *a, Scratch *s)
{
    const uint8_t *flags = ix->flags.p;
    for (size_t id = 0; id < ix->limit; id++) {
        int d = hamming(fp_of(ix, (uint32_t)id), q);
        if (d <= a->tmax && (flags[id] & F_LIVE) && d <= threshold_of(a, tag_of(ix, (uint32_t)id))) {
            s->total++;
            if (offer(s, a, (uint32_t)id, d) < 0)
                return -1;
        }
    }
    return 0;
}

/* A candidate met in table t: a match if within its threshold, reported from the
 * first probed table whose radius reaches it (so once). */
static inline int check_candidate(const Index *ix, const uint8_t *q, const Ask *a, const Plan *plan,
                                  const uint32_t *qk, uint32_t id, int t, Scratch *s)
{
    const uint8_t *x = fp_of(ix, id), *flags = ix->flags.p;
    int d = hamming(x, q);
    if (d > a->tmax || (flags[id] & (F_LIVE | F_TABLED)) != (F_LIVE | F_TABLED))
        return 0;
    for (int u = 0; u < t; u++) {
        int rho = plan->rho[u];
        if (rho >= 0 && popcount32(chunk_of(x, ix->tables[u].start, ix->tables[u].width) ^ qk[u]) <= rho)
            return 0;
    }
    if (d > threshold_of(a, tag_of(ix, id)))
        return 0;
    s->total++;
    return offer(s, a, id, d);
}

/* One query through the tables, in passes that each prefetch what the next will touch
 * so that many cache misses are in flight together instead of one after the other:
 * probe keys -> bucket ranges -> candidates (through a prefetch ring) -> distance
 * checks. Groups met on the way are evaluated last, nearest first. */
HOT static int search_tables(const Index *ix, const uint8_t *q, const Ask *a, const Plan *plan, Scratch *s)
{
    const uint8_t *fp = ix->fp.p, *flags = ix->flags.p;
    uint32_t qk[MAX_TABLES];
    size_t nr = 0;
    for (int t = 0; t < ix->ntables; t++) {
        int rho = plan->rho[t];
        if (rho < 0)
            continue;
        const Table *tb = &ix->tables[t];
        const MaskSet *ms = &ix->masks[tb->width];
        uint32_t k = qk[t] = chunk_of(q, tb->start, tb->width);
        size_t nk = 0;
        for (int r = 0; r <= rho; r++)
            nk += ms->n[r];
        if (grow((void **)&s->keys, &s->keys_cap, nk, sizeof(uint32_t)) < 0)
            return -1;
        nk = 0;
        for (int r = 0; r <= rho; r++)
            for (size_t i = 0; i < ms->n[r]; i++)
                s->keys[nk++] = k ^ ms->m[r][i];
        const uint32_t *off = tb->off.p, *ids = tb->ids.p;
        for (size_t i = 0; i < nk; i++)
            __builtin_prefetch(off + s->keys[i]);
        s->probes += nk;
        if (grow((void **)&s->lo, &s->lo_cap, nr + nk, sizeof(uint32_t)) < 0 ||
            grow((void **)&s->hi, &s->hi_cap, nr + nk, sizeof(uint32_t)) < 0 ||
            grow((void **)&s->rt, &s->rt_cap, nr + nk, 1) < 0)
            return -1;
        for (size_t i = 0; i < nk; i++) {
            uint32_t lo = off[s->keys[i]], hi = off[s->keys[i] + 1];
            if (hi > lo) {
                /* the bucket's first and last line: a bucket of a few entries often
                 * straddles two lines, and a miss on the second stalls the candidate
                 * loop as long as one on the first (10M correlated fingerprints:
                 * ~20 % less time a query; lines between are sequential, and the
                 * hardware prefetches them) */
                __builtin_prefetch(ids + lo);
                __builtin_prefetch(ids + hi - 1);
                s->lo[nr] = lo;
                s->hi[nr] = hi;
                s->rt[nr] = (uint8_t)t;
                nr++;
            }
        }
    }
    /* Candidates flow through a ring: each one's fingerprint is prefetched PIPELINE
     * candidates before it is checked, so that many misses are in flight while the
     * lines already fetched are still in the first-level cache when they are used. */
    uint32_t ring_id[PIPELINE];
    uint8_t ring_t[PIPELINE];
    size_t head = 0, pending = 0;
    for (size_t r = 0; r < nr; r++) {
        const uint32_t *ids = ix->tables[s->rt[r]].ids.p;
        for (size_t j = s->lo[r]; j < s->hi[r]; j++) {
            uint32_t id = ids[j];
            if (id & GROUP_BIT) {
                if (id != HOLE && remember_group(s, id & ~GROUP_BIT) < 0)
                    return -1;
                continue;
            }
            __builtin_prefetch(fp + (size_t)id * FP_BYTES);
            s->candidates++;
            if (pending == PIPELINE) {
                if (check_candidate(ix, q, a, plan, qk, ring_id[head], ring_t[head], s) < 0)
                    return -1;
                head = (head + 1) & (PIPELINE - 1);
                pending--;
            }
            size_t slot = (head + pending++) & (PIPELINE - 1);
            ring_id[slot] = id;
            ring_t[slot] = s->rt[r];
        }
    }
    for (; pending; pending--, head = (head + 1) & (PIPELINE - 1))
        if (check_candidate(ix, q, a, plan, qk, ring_id[head], ring_t[head], s) < 0)
            return -1;
    /* items added since the last merge */
    const uint32_t *ov = ix->overflow.p;
    for (size_t i = 0; i < ix->n_overflow; i++) {
        uint32_t id = ov[i];
        int d = hamming(fp + (size_t)id * FP_BYTES, q);
        if (d <= a->tmax && (flags[id] & (F_LIVE | F_OVERFLOW)) == (F_LIVE | F_OVERFLOW) &&
            d <= threshold_of(a, tag_of(ix, id))) {
            s->total++;
            if (offer(s, a, id, d) < 0)
                return -1;
        }
    }
    return eval_groups(ix, q, a, s);
}

/* One query (in the caller's bit order): s->hits and s->total; with a limit the hits
 * come out sorted by (distance, id). */
static int search_one(const Index *ix, const uint8_t *query, const Ask *a, const Plan *plan, Scratch *s)
{
    uint8_t q[FP_BYTES];
    to_stored(ix, query, q);
    s->n_hits = 0;
    s->total = 0;
    Plan own;
    if (!plan->scan && plan->adaptive) {
        own = *plan;
        adapt_plan(ix, q, a->tmax, &own);
        plan = &own;
    }
    s->probes = s->candidates = s->members = 0;
    int rc = plan->scan ? search_scan(ix, q, a, s) : search_tables(ix, q, a, plan, s);
    if (rc == 0 && a->limit)
        qsort(s->hits, s->n_hits, sizeof(Hit), cmp_hit);
    uint64_t *work = ((Index *)ix)->work; /* counters only: searches share the index read-only otherwise */
    __atomic_fetch_add(&work[0], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&work[1], s->probes, __ATOMIC_RELAXED);
    __atomic_fetch_add(&work[2], s->candidates, __ATOMIC_RELAXED);
    __atomic_fetch_add(&work[3], s->members, __ATOMIC_RELAXED);
    return rc;
}

/* ------------------------------------------------------------------ data-aware partition */

/* Up to `want` live ids spread evenly over the id range (only items in no group, with
 * `singles`: the tables hold those, each group once). */
static size_t sample_ids(const Index *ix, uint32_t *out, size_t want, int singles)
{
    const uint8_t *flags = ix->flags.p;
    uint8_t mask = singles ? (F_LIVE | F_GROUPED) : F_LIVE;
    size_t pool = singles ? ix->n_live - ix->n_grouped : ix->n_live;
    size_t step = pool > want ? pool / want : 1, n = 0, seen = 0;
    for (size_t id = 0; id < ix->limit && n < want; id++)
        if ((flags[id] & mask) == F_LIVE)
            if (seen++ % step == 0)
                out[n++] = (uint32_t)id;
    return n;
}

/* Squared correlation of every pair of stored bits over the sampled items, and the
 * variance of each bit (256 x 256 + 256 doubles). Pair counts come from popcounts
 * of bit columns: 32,640 pairs x n/64 words. */
static double *bit_statistics(const Index *ix, const uint32_t *ids, size_t n)
{
    size_t words = (n + 63) / 64;
    uint64_t *cols = calloc((size_t)FP_BITS * words, sizeof(uint64_t));
    double *r2 = calloc((size_t)FP_BITS * FP_BITS + FP_BITS, sizeof(double));
    if (!cols || !r2) {
        free(cols);
        free(r2);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *x = fp_of(ix, ids[i]);
        for (int p = 0; p < FP_BITS; p++)
            if (x[p >> 3] >> (p & 7) & 1)
                cols[(size_t)p * words + (i >> 6)] |= 1ull << (i & 63);
    }
    double count[FP_BITS], dn = (double)n, *var = r2 + (size_t)FP_BITS * FP_BITS;
    for (int p = 0; p < FP_BITS; p++) {
        uint64_t c = 0;
        for (size_t w = 0; w < words; w++)
            c += (uint64_t)__builtin_popcountll(cols[(size_t)p * words + w]);
        count[p] = (double)c;
        var[p] = count[p] * (dn - count[p]) / (dn * dn);
    }
    for (int i = 0; i < FP_BITS; i++)
        for (int j = i + 1; j < FP_BITS; j++) {
            const uint64_t *a = cols + (size_t)i * words, *b = cols + (size_t)j * words;
            uint64_t c = 0;
            for (size_t w = 0; w < words; w++)
                c += (uint64_t)__builtin_popcountll(a[w] & b[w]);
            double cov = dn * (double)c - count[i] * count[j];
            double den = count[i] * (dn - count[i]) * count[j] * (dn - count[j]);
            double v = den > 0 ? cov * cov / den : 0;
            r2[i * FP_BITS + j] = r2[j * FP_BITS + i] = v;
        }
    free(cols);
    return r2;
}

/* Sum over tables of the squared correlations of the pairs of bits a table holds, if
 * stored position p held current stored bit order[p]. */
static double partition_objective(const Index *ix, const double *r2, const uint8_t *order)
{
    double sum = 0;
    for (int t = 0; t < ix->ntables; t++) {
        int s = ix->tables[t].start, w = ix->tables[t].width;
        for (int i = s; i < s + w; i++)
            for (int j = i + 1; j < s + w; j++)
                sum += r2[order[i] * FP_BITS + order[j]];
    }
    return sum;
}

/* Greedy data-aware partition: bits that no table covers (when the widths sum to
 * less than 256) are the most nearly constant ones; every other bit, the most
 * correlated first, goes to the table (with room left) where it adds the least
 * squared correlation with the bits already there (ties: the emptiest table). */
static void greedy_partition(const Index *ix, const double *r2, uint8_t *order)
{
    const double *var = r2 + (size_t)FP_BITS * FP_BITS;
    int bits[FP_BITS], used = 0, covered = 0;
    for (int t = 0; t < ix->ntables; t++)
        covered += ix->tables[t].width;
    for (int p = 0; p < FP_BITS; p++)
        bits[p] = p;
    /* least variance first, for the uncovered positions */
    for (int i = 1; i < FP_BITS; i++)
        for (int j = i; j > 0 && var[bits[j]] < var[bits[j - 1]]; j--) {
            int x = bits[j];
            bits[j] = bits[j - 1];
            bits[j - 1] = x;
        }
    int uncovered = FP_BITS - covered;
    double weight[FP_BITS];
    for (int p = 0; p < FP_BITS; p++) {
        weight[p] = 0;
        for (int q = 0; q < FP_BITS; q++)
            weight[p] += r2[p * FP_BITS + q];
    }
    int rest[FP_BITS], n_rest = 0;
    for (int i = uncovered; i < FP_BITS; i++)
        rest[n_rest++] = bits[i];
    for (int i = 1; i < n_rest; i++) /* most correlated first */
        for (int j = i; j > 0 && weight[rest[j]] > weight[rest[j - 1]]; j--) {
            int x = rest[j];
            rest[j] = rest[j - 1];
            rest[j - 1] = x;
        }
    int members[MAX_TABLES][MAX_WIDTH], fill[MAX_TABLES] = {0};
    for (int i = 0; i < n_rest; i++) {
        int b = rest[i], best = -1;
        double best_cost = 0;
        for (int t = 0; t < ix->ntables; t++) {
            if (fill[t] >= ix->tables[t].width)
                continue;
            double c = 0;
            for (int k = 0; k < fill[t]; k++)
                c += r2[b * FP_BITS + members[t][k]];
            if (best < 0 || c < best_cost - 1e-12 || (c <= best_cost + 1e-12 && fill[t] < fill[best])) {
                best = t;
                best_cost = c;
            }
        }
        members[best][fill[best]++] = b;
    }
    for (int t = 0; t < ix->ntables; t++) {
        qsort(members[t], (size_t)fill[t], sizeof(int), cmp_int_ptr);
        for (int k = 0; k < fill[t]; k++)
            order[used++] = (uint8_t)members[t][k];
    }
    int tail[FP_BITS];
    for (int i = 0; i < uncovered; i++)
        tail[i] = bits[i];
    qsort(tail, (size_t)uncovered, sizeof(int), cmp_int_ptr);
    for (int i = 0; i < uncovered; i++)
        order[used++] = (uint8_t)tail[i];
}

typedef struct {
    Index *ix;
    PermLut *lut;
    size_t next;
} PermuteJob;

static void *permute_worker(void *arg)
{
    PermuteJob *job = arg;
    Index *ix = job->ix;
    for (;;) {
        size_t first = __atomic_fetch_add(&job->next, 65536, __ATOMIC_RELAXED);
        if (first >= ix->limit)
            break;
        size_t last = first + 65536 < ix->limit ? first + 65536 : ix->limit;
        for (size_t id = first; id < last; id++) {
            uint8_t *x = (uint8_t *)ix->fp.p + id * FP_BYTES, tmp[FP_BYTES];
            perm_apply(job->lut, x, tmp);
            memcpy(x, tmp, FP_BYTES);
        }
    }
    return NULL;
}

/* Rearrange every stored fingerprint (and group centre): new stored bit p = current
 * stored bit order[p]. The tables are rebuilt afterwards. */
static int apply_partition(Index *ix, const uint8_t *order)
{
    PermLut *step = malloc(sizeof(PermLut)), *lut = ix->lut, *inverse = ix->inverse;
    if (!lut)
        lut = malloc(sizeof(PermLut));
    if (!inverse)
        inverse = malloc(sizeof(PermLut));
    if (!step || !lut || !inverse) {
        free(step);
        if (lut != ix->lut)
            free(lut);
        if (inverse != ix->inverse)
            free(inverse);
        return -1;
    }
    ix->lut = lut;
    ix->inverse = inverse;
    perm_lut_build(step, order);
    PermuteJob job = {ix, step, 0};
    pthread_t th;
    int started = pthread_create(&th, NULL, permute_worker, &job) == 0;
    permute_worker(&job);
    if (started)
        pthread_join(th, NULL);
    for (size_t g = 0; g < ix->n_groups; g++) {
        uint8_t tmp[FP_BYTES];
        perm_apply(step, ix->groups[g].centre, tmp);
        memcpy(ix->groups[g].centre, tmp, FP_BYTES);
    }
    free(step);
    uint8_t perm[FP_BITS], inv[FP_BITS];
    int identity = 1;
    for (int p = 0; p < FP_BITS; p++) {
        perm[p] = ix->perm[order[p]];
        identity &= perm[p] == p;
    }
    memcpy(ix->perm, perm, FP_BITS);
    for (int p = 0; p < FP_BITS; p++)
        inv[perm[p]] = (uint8_t)p;
    perm_lut_build(ix->lut, perm);
    perm_lut_build(ix->inverse, inv);
    ix->permuted = !identity;
    return 0;
}

/* Is a better partition worth a rebuild? `margin`: the share of the current objective
 * a new partition must save (beyond sampling noise). With `apply`, rearranges the
 * stored bits when it is. Records both objectives for stats(). */
static int consider_partition(Index *ix, double margin, int apply)
{
    if (!ix->auto_partition || ix->n_live < PARTITION_MIN || ix->ntables < 2)
        return 0;
    uint32_t *ids = malloc(SAMPLE_MAX * sizeof(uint32_t));
    if (!ids)
        return 0;
    size_t n = sample_ids(ix, ids, SAMPLE_MAX, 1);
    double *r2 = bit_statistics(ix, ids, n);
    free(ids);
    if (!r2)
        return 0;
    uint8_t current[FP_BITS], order[FP_BITS], input[FP_BITS];
    for (int p = 0; p < FP_BITS; p++)
        current[p] = (uint8_t)p;
    for (int p = 0; p < FP_BITS; p++)
        input[ix->perm[p]] = (uint8_t)p; /* the input's own order, in stored positions */
    greedy_partition(ix, r2, order);
    double now = partition_objective(ix, r2, current), better = partition_objective(ix, r2, order);
    double pairs = 0;
    for (int t = 0; t < ix->ntables; t++)
        pairs += ix->tables[t].width * (ix->tables[t].width - 1) / 2.0;
    double noise = pairs / (double)n; /* each sampled r^2 is about 1/n even for independent bits */
    int worth = now - better > margin * now && now - better > 4 * noise;
    ix->partition_objective[0] = partition_objective(ix, r2, input);
    ix->partition_objective[1] = worth ? better : now;
    free(r2);
    if (worth && apply && apply_partition(ix, order) < 0)
        return 0;
    return worth;
}

/* ------------------------------------------------------------------ calibration */

/* Mean entries met by the probes at exactly radius r in each table, for sampled items
 * taken as queries (uploads look like what is indexed): the planner's costs. */
static void calibrate(Index *ix)
{
    ix->calibrated = 0;
    if (!ix->built || ix->n_live < PARTITION_MIN)
        return;
    uint32_t ids[CALIBRATION_QUERIES];
    size_t n = sample_ids(ix, ids, CALIBRATION_QUERIES, 0);
    if (!n)
        return;
    for (int t = 0; t < ix->ntables; t++) {
        const Table *tb = &ix->tables[t];
        const MaskSet *ms = &ix->masks[tb->width];
        const uint32_t *off = tb->off.p;
        for (int r = 0; r <= MAX_RHO; r++) {
            if (r > tb->width) {
                ix->rate[t][r] = 0;
                continue;
            }
            size_t nq = r <= 3 ? n : (n < 16 ? n : 16);
            double sum = 0;
            for (size_t i = 0; i < nq; i++) {
                uint32_t k = table_key(ix, t, fp_of(ix, ids[i]));
                for (size_t j = 0; j < ms->n[r]; j++) {
                    uint32_t key = k ^ ms->m[r][j];
                    sum += (double)(off[key + 1] - off[key]);
                }
                if (r == 0)
                    sum -= 1; /* the query's own entry (or its group's) */
            }
            ix->rate[t][r] = sum > 0 ? sum / (double)nq : 0;
        }
    }
    ix->calibrated = 1;
}

/* ------------------------------------------------------------------ groups: forming */

static void majority_centre(const Index *ix, const uint32_t *ids, size_t n, uint8_t *centre)
{
    uint32_t count[FP_BITS] = {0}, m = 0;
    size_t step = n > CENTRE_SAMPLE ? n / CENTRE_SAMPLE : 1;
    for (size_t i = 0; i < n; i += step, m++) {
        const uint8_t *x = fp_of(ix, ids[i]);
        for (int p = 0; p < FP_BITS; p++)
            count[p] += x[p >> 3] >> (p & 7) & 1;
    }
    memset(centre, 0, FP_BYTES);
    for (int p = 0; p < FP_BITS; p++)
        if (2 * count[p] > m)
            centre[p >> 3] |= (uint8_t)(1u << (p & 7));
}

/* Live items in the tables (not grouped) of one tag within GROUP_RADIUS of `centre`,
 * sorted by id. */
static int singles_near(const Index *ix, const uint8_t *centre, int tag, uint32_t **out, size_t *cap, size_t *n)
{
    Ask a = {GROUP_RADIUS, GROUP_RADIUS, NULL, 0, 0};
    Plan plan;
    Scratch s;
    memset(&s, 0, sizeof s);
    make_plan(ix, GROUP_RADIUS, 1, &plan);
    int rc = search_tables(ix, centre, &a, &plan, &s);
    const uint8_t *flags = ix->flags.p;
    *n = 0;
    for (size_t i = 0; rc == 0 && i < s.n_hits; i++) {
        uint32_t id = s.hits[i].id;
        if ((flags[id] & (F_LIVE | F_TABLED)) == (F_LIVE | F_TABLED) && tag_of(ix, id) == tag) {
            if (grow((void **)out, cap, *n + 1, sizeof(uint32_t)) < 0) {
                rc = -1;
                break;
            }
            (*out)[(*n)++] = id;
        }
    }
    scratch_free(&s);
    if (rc == 0)
        qsort(*out, *n, sizeof(uint32_t), cmp_u32);
    return rc;
}

/* Make a group of `members` (sorted ids of live items now in the tables). */
static int create_group(Index *ix, const uint8_t *centre, int tag, const uint32_t *members, size_t n)
{
    if (ix->n_groups >= GROUP_BIT - 2)
        return 0; /* no group number left: the items simply stay in the tables */
    if (!ix->group_of.p && buf_resize(&ix->group_of, ix->limit * sizeof(uint32_t)) < 0)
        return -1;
    if (ix->n_groups == ix->cap_groups) {
        size_t cap = ix->cap_groups ? ix->cap_groups * 2 : 16;
        Group *p = realloc(ix->groups, cap * sizeof(Group));
        if (!p)
            return -1;
        ix->groups = p;
        ix->cap_groups = cap;
    }
    uint32_t gi = (uint32_t)ix->n_groups;
    Group *g = &ix->groups[gi];
    memset(g, 0, sizeof *g);
    if (!(g->ids = malloc(n * sizeof(uint32_t))))
        return -1;
    ix->n_groups++;
    memcpy(g->centre, centre, FP_BYTES);
    g->tag = (uint32_t)tag;
    g->cap_ids = g->n_ids = (uint32_t)n;
    memcpy(g->ids, members, n * sizeof(uint32_t));
    uint8_t *flags = ix->flags.p;
    for (size_t i = 0; i < n; i++) {
        flags[members[i]] = (uint8_t)((flags[members[i]] & ~F_TABLED) | F_GROUPED);
        group_of(ix)[members[i]] = gi;
    }
    ix->n_tabled -= n;
    ix->n_grouped += n;
    g->n_live = (uint32_t)n;
    ix->n_groups_formed++;
    return group_sort(ix, gi, 0);
}

/* Is group gi registered under key k of table t? */
static int registered(const Index *ix, int t, uint32_t k, uint32_t gi)
{
    const Table *tb = &ix->tables[t];
    const uint32_t *off = tb->off.p, *ids = tb->ids.p;
    for (uint32_t j = off[k]; j < off[k + 1]; j++)
        if (ids[j] == (GROUP_BIT | gi))
            return 1;
    return 0;
}

static size_t unique_pairs(KeyVal *pairs, size_t n)
{
    qsort(pairs, n, sizeof(KeyVal), cmp_keyval);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || pairs[i].key != pairs[u - 1].key || pairs[i].value != pairs[u - 1].value)
            pairs[u++] = pairs[i];
    return u;
}

/* Items `moved` (sorted) left the tables for groups, new ones from `first_new` on:
 * take back their entries (as holes for a few, by a sequential squeeze for many) and
 * register their groups under their keys (a new group also under its centre's), in
 * one merge. */
static int settle_moved(Index *ix, uint32_t *moved, size_t n, size_t first_new)
{
    if (n <= HOLES_SQUEEZE)
        punch_holes(ix, moved, n);
    if (n > HOLES_SQUEEZE || ix->n_holes > ix->n_tabled / 16)
        squeeze_tables(ix);
    KeyVal *regs[MAX_TABLES] = {0};
    size_t n_regs[MAX_TABLES] = {0}, caps[MAX_TABLES] = {0};
    int rc = 0;
    for (int t = 0; t < ix->ntables && rc == 0; t++) {
        for (size_t i = 0; i < n && rc == 0; i++) {
            uint32_t g = group_of(ix)[moved[i]], k = table_key(ix, t, fp_of(ix, moved[i]));
            if (g < first_new && registered(ix, t, k, g))
                continue;
            if (grow((void **)&regs[t], &caps[t], n_regs[t] + 1, sizeof(KeyVal)) < 0)
                rc = -1;
            else
                regs[t][n_regs[t]++] = (KeyVal){k, GROUP_BIT | g};
        }
        for (size_t g = first_new; g < ix->n_groups && rc == 0; g++) {
            if (grow((void **)&regs[t], &caps[t], n_regs[t] + 1, sizeof(KeyVal)) < 0)
                rc = -1;
            else
                regs[t][n_regs[t]++] = (KeyVal){table_key(ix, t, ix->groups[g].centre), GROUP_BIT | (uint32_t)g};
        }
        if (regs[t])
            n_regs[t] = unique_pairs(regs[t], n_regs[t]);
    }
    if (rc == 0)
        rc = merge_entries(ix, NULL, 0, regs, n_regs, 2);
    for (int t = 0; t < ix->ntables; t++)
        free(regs[t]);
    return rc;
}

static int64_t nearest_group(const Index *ix, const uint8_t *x, int tag, const Plan *plan);

/* A heavy bucket's items may be a cluster of near-duplicates: for each tag with
 * enough of them, take their bitwise majority as a centre, gather the items within
 * GROUP_RADIUS of it, once more around their own majority, and make a group of them
 * if they are at least GROUP_MIN. */
static int try_form_group(Index *ix, const uint32_t *seed, size_t n_seed, const Plan *plan, uint32_t **moved,
                          size_t *moved_cap, size_t *n_moved)
{
    uint32_t *members = NULL, *same = malloc((n_seed ? n_seed : 1) * sizeof(uint32_t));
    size_t cap = 0, n = 0;
    int rc = same ? 0 : -1;
    for (size_t first = 0; rc == 0 && first < n_seed; first++) {
        int tag = tag_of(ix, seed[first]), earlier = 0;
        for (size_t i = 0; i < first && !earlier; i++)
            earlier = tag_of(ix, seed[i]) == tag;
        if (earlier)
            continue;
        size_t m = 0;
        for (size_t i = first; i < n_seed; i++)
            if (tag_of(ix, seed[i]) == tag)
                same[m++] = seed[i];
        if (m < GROUP_MIN)
            continue;
        uint8_t centre[FP_BYTES];
        majority_centre(ix, same, m, centre);
        if ((rc = singles_near(ix, centre, tag, &members, &cap, &n)) < 0 || n < GROUP_MIN)
            continue;
        majority_centre(ix, members, n, centre);
        if ((rc = singles_near(ix, centre, tag, &members, &cap, &n)) < 0 || n < GROUP_MIN)
            continue;
        if (grow((void **)moved, moved_cap, *n_moved + n, sizeof(uint32_t)) < 0) {
            rc = -1;
            break;
        }
        memcpy(*moved + *n_moved, members, n * sizeof(uint32_t));
        *n_moved += n;
        /* a group of this tag already sits there (its centre within GROUP_RADIUS): join it */
        int64_t g = ix->n_groups ? nearest_group(ix, centre, tag, plan) : -1;
        if (g < 0) {
            rc = create_group(ix, centre, tag, members, n);
            continue;
        }
        for (size_t i = 0; i < n && rc == 0; i++) {
            rc = group_attach(ix, (uint32_t)g, members[i]);
            ix->n_tabled--;
        }
    }
    free(same);
    free(members);
    return rc;
}

/* Look for clusters in buckets holding at least HEAVY_MIN items (and 8 times the mean):
 * the buckets of `items` (the ones just merged; then the tables are settled here), or
 * every bucket (n = SIZE_MAX, in a rebuild, which then builds the tables again).
 * Returns how many items moved from the tables into groups, or -1. */
static long detect_groups(Index *ix, const uint32_t *items, size_t n)
{
    size_t first_new = ix->n_groups, n_moved = 0, moved_cap = 0;
    uint32_t *moved = NULL;
    if (!ix->built)
        return 0;
    Plan plan;
    make_plan(ix, GROUP_RADIUS, 1, &plan);
    uint64_t *seeds = NULL;
    size_t n_seeds = 0, seeds_cap = 0;
    const uint8_t *flags = ix->flags.p;
    for (int t = 0; t < ix->ntables; t++) {
        const Table *tb = &ix->tables[t];
        const uint32_t *off = tb->off.p;
        size_t nb = (size_t)1 << tb->width;
        size_t heavy = (size_t)(8.0 * (double)tb->count / (double)nb);
        if (heavy < HEAVY_MIN)
            heavy = HEAVY_MIN;
        size_t count = n == SIZE_MAX ? nb : n;
        for (size_t i = 0; i < count; i++) {
            uint32_t k;
            if (n == SIZE_MAX)
                k = (uint32_t)i;
            else if (flags[items[i]] & F_TABLED)
                k = table_key(ix, t, fp_of(ix, items[i]));
            else
                continue;
            if (off[k + 1] - off[k] < heavy)
                continue;
            if (grow((void **)&seeds, &seeds_cap, n_seeds + 1, sizeof(uint64_t)) < 0) {
                free(seeds);
                return -1;
            }
            seeds[n_seeds++] = (uint64_t)t << 32 | k;
        }
    }
    qsort(seeds, n_seeds, sizeof(uint64_t), cmp_u64);
    uint32_t *bucket = NULL;
    size_t bucket_cap = 0;
    int rc = 0;
    for (size_t i = 0; i < n_seeds && rc == 0; i++) {
        if (i && seeds[i] == seeds[i - 1])
            continue;
        const Table *tb = &ix->tables[seeds[i] >> 32];
        const uint32_t *off = tb->off.p, *ids = tb->ids.p;
        uint32_t k = (uint32_t)seeds[i];
        size_t m = 0;
        for (uint32_t j = off[k]; j < off[k + 1]; j++) { /* the items still in the tables */
            uint32_t id = ids[j];
            if (!(id & GROUP_BIT) && (flags[id] & (F_LIVE | F_TABLED)) == (F_LIVE | F_TABLED)) {
                if (grow((void **)&bucket, &bucket_cap, m + 1, sizeof(uint32_t)) < 0) {
                    rc = -1;
                    break;
                }
                bucket[m++] = id;
            }
        }
        if (rc == 0 && m >= GROUP_MIN)
            rc = try_form_group(ix, bucket, m, &plan, &moved, &moved_cap, &n_moved);
    }
    free(bucket);
    free(seeds);
    if (rc == 0 && n_moved && n != SIZE_MAX) {
        qsort(moved, n_moved, sizeof(uint32_t), cmp_u32);
        rc = settle_moved(ix, moved, n_moved, first_new);
    }
    free(moved);
    return rc < 0 ? -1 : (long)n_moved;
}

/* The group of this tag whose centre is nearest to x (at most GROUP_RADIUS), if any:
 * groups are registered under their centres' keys, so probing for GROUP_RADIUS
 * reaches every centre within it. */
static int64_t nearest_group(const Index *ix, const uint8_t *x, int tag, const Plan *plan)
{
    int64_t best = -1;
    int best_d = GROUP_RADIUS + 1;
    for (int t = 0; t < ix->ntables; t++) {
        int rho = plan->rho[t];
        if (rho < 0)
            continue;
        const Table *tb = &ix->tables[t];
        const MaskSet *ms = &ix->masks[tb->width];
        const uint32_t *off = tb->off.p, *ids = tb->ids.p;
        uint32_t k = table_key(ix, t, x);
        for (int r = 0; r <= rho; r++)
            for (size_t i = 0; i < ms->n[r]; i++) {
                uint32_t key = k ^ ms->m[r][i];
                for (uint32_t j = off[key]; j < off[key + 1]; j++) {
                    uint32_t v = ids[j];
                    if (!(v & GROUP_BIT) || v == HOLE)
                        continue;
                    const Group *g = &ix->groups[v & ~GROUP_BIT];
                    if ((int)g->tag != tag)
                        continue;
                    int d = hamming(x, g->centre);
                    if (d < best_d || (d == best_d && (int64_t)(v & ~GROUP_BIT) < best)) {
                        best_d = d;
                        best = v & ~GROUP_BIT;
                    }
                }
            }
    }
    return best;
}

/* ------------------------------------------------------------------ changes */

static int rebuild(Index *ix, int nthreads);
static int build_tables(Index *ix, int nthreads);

/* Sort every member list, forget dead members, drop empty groups (renumbered). */
static int compact_groups(Index *ix)
{
    size_t kept = 0;
    for (size_t gi = 0; gi < ix->n_groups; gi++) {
        if (group_sort(ix, (uint32_t)gi, 1) < 0)
            return -1;
        Group *g = &ix->groups[gi];
        if (!g->n_ids) {
            free(g->ids);
            free_postings(g);
            continue;
        }
        if (kept != gi) {
            ix->groups[kept] = *g;
            for (uint32_t i = 0; i < g->n_ids; i++)
                group_of(ix)[g->ids[i]] = (uint32_t)kept;
        }
        kept++;
    }
    ix->n_groups = kept;
    ix->n_group_tombstones = 0;
    return 0;
}

/* Rebuild every table from the live items and groups (caller holds the write lock):
 * widths for the item count, the partition for the bits' statistics, no tombstones,
 * holes or overflow; then clusters are looked for everywhere and the planner's costs
 * measured again. */
static int rebuild(Index *ix, int nthreads)
{
    if (compact_groups(ix) < 0)
        return -1;
    free_tables(ix);
    if (ix->auto_geometry) {
        int widths[MAX_TABLES];
        set_geometry(ix, widths, auto_widths(ix->n_live, widths));
        ix->geometry_items = ix->n_live;
    }
    consider_partition(ix, 0.1, 1);
    for (int t = 0; t < ix->ntables; t++)
        if (masks_prepare(ix, ix->tables[t].width) < 0)
            return -1;
    if (build_tables(ix, nthreads) < 0)
        return -1;
    ix->n_rebuilds++;
    long made = detect_groups(ix, NULL, SIZE_MAX);
    if (made < 0)
        return -1;
    if (made) {
        /* the tables again without the new groups' members, and the partition chosen
         * for what stays in them (a cluster skews the bits' statistics) */
        consider_partition(ix, 0.1, 1);
        if (build_tables(ix, nthreads) < 0)
            return -1;
    }
    calibrate(ix);
    return 0;
}

/* Every table from scratch: live items in no group, and the groups' registrations;
 * the overflow list is emptied. Without memory for them, the tables are dropped and
 * every search scans (exact, slow) until a rebuild succeeds. */
static int build_tables(Index *ix, int nthreads)
{
    int ok = on_tables(ix, nthreads, build_task, NULL) == 0;
    uint8_t *flags = ix->flags.p;
    for (size_t id = 0; id < ix->limit; id++) {
        uint8_t f = flags[id];
        if (!(f & F_LIVE))
            flags[id] = f & (F_GROUPED | F_TAIL); /* a dead member stays listed; other dead items are forgotten */
        else if (!(f & F_GROUPED))
            flags[id] = ok ? (F_LIVE | F_TABLED) : F_LIVE;
    }
    ix->n_overflow = 0;
    buf_resize(&ix->overflow, 0);
    ix->n_tombstones = ix->n_holes = 0;
    if (!ok) {
        free_tables(ix);
        ix->n_tabled = 0;
        return -1;
    }
    ix->n_tabled = ix->n_live - ix->n_grouped;
    ix->built = 1;
    return 0;
}

/* Move the overflow list into the structures (caller holds the write lock): an item
 * near the centre of a group of its tag joins it (and the group is registered under
 * its keys), the others go into the tables in place; buckets that became heavy are
 * examined for new groups. Rebuilds instead when the tables are due for it. */
static int merge_overflow(Index *ix, int nthreads)
{
    int regeometry = ix->auto_geometry && ix->n_live > 2 * ix->geometry_items + 4096;
    if (!ix->built || regeometry || ix->n_tombstones + ix->n_holes > (ix->n_tabled + ix->n_holes) / 4 ||
        ix->n_overflow > ix->n_tabled / 2)
        return rebuild(ix, nthreads);
    uint32_t *ov = ix->overflow.p;
    uint8_t *flags = ix->flags.p;
    size_t m = 0;
    for (size_t i = 0; i < ix->n_overflow; i++) {
        uint32_t id = ov[i];
        flags[id] &= ~F_OVERFLOW;
        if ((flags[id] & (F_LIVE | F_TABLED | F_GROUPED)) == F_LIVE)
            ov[m++] = id;
    }
    ix->n_overflow = 0;
    uint32_t *singles = malloc((m ? m : 1) * sizeof(uint32_t));
    KeyVal *regs[MAX_TABLES] = {0};
    size_t n_regs[MAX_TABLES] = {0}, caps[MAX_TABLES] = {0}, n_singles = 0;
    int rc = singles ? 0 : -1;
    Plan plan;
    if (ix->n_groups)
        make_plan(ix, GROUP_RADIUS, 1, &plan);
    for (size_t i = 0; rc == 0 && i < m; i++) {
        uint32_t id = ov[i];
        int64_t g = ix->n_groups ? nearest_group(ix, fp_of(ix, id), tag_of(ix, id), &plan) : -1;
        if (g < 0) {
            singles[n_singles++] = id;
            continue;
        }
        if ((rc = group_attach(ix, (uint32_t)g, id)) < 0)
            break;
        for (int t = 0; t < ix->ntables && rc == 0; t++) {
            uint32_t k = table_key(ix, t, fp_of(ix, id));
            if (registered(ix, t, k, (uint32_t)g))
                continue;
            if (grow((void **)&regs[t], &caps[t], n_regs[t] + 1, sizeof(KeyVal)) < 0)
                rc = -1;
            else
                regs[t][n_regs[t]++] = (KeyVal){k, GROUP_BIT | (uint32_t)g};
        }
    }
    for (int t = 0; t < ix->ntables; t++)
        if (regs[t])
            n_regs[t] = unique_pairs(regs[t], n_regs[t]);
    if (rc == 0)
        rc = merge_entries(ix, singles, n_singles, regs, n_regs, nthreads);
    for (int t = 0; t < ix->ntables; t++)
        free(regs[t]);
    buf_resize(&ix->overflow, 0);
    if (rc == 0) {
        for (size_t i = 0; i < n_singles; i++)
            flags[singles[i]] |= F_TABLED;
        ix->n_tabled += n_singles;
        ix->n_merges++;
        rc = detect_groups(ix, singles, n_singles) < 0 ? -1 : 0;
        /* the bits of what the tables hold drifted from the partition: choose again */
        if (rc == 0 && consider_partition(ix, 0.2, 0))
            rc = rebuild(ix, nthreads);
    } else {
        /* the tables are gone (merge_entries dropped them): every search scans; the
         * items keep LIVE and are found that way until a rebuild succeeds */
        for (size_t i = 0; i < n_singles; i++)
            flags[singles[i]] &= ~F_TABLED;
    }
    free(singles);
    return rc;
}

/* Add or replace one item (caller holds the write lock). */
static int add_item(Index *ix, uint32_t id, const uint8_t *fingerprint, int tag)
{
    if (ensure_limit(ix, id) < 0 || (tag && ensure_tags(ix) < 0))
        return -1;
    uint8_t stored[FP_BYTES];
    to_stored(ix, fingerprint, stored);
    uint8_t *flags = ix->flags.p, *slot = (uint8_t *)ix->fp.p + (size_t)id * FP_BYTES;
    uint8_t f = flags[id];
    int same = memcmp(slot, stored, FP_BYTES) == 0 && tag_of(ix, id) == tag;
    if (same && (f & F_LIVE))
        return 0;
    if (same && (f & (F_TABLED | F_GROUPED))) { /* re-added as it was: the tombstone comes back */
        flags[id] = f | F_LIVE;
        ix->n_live++;
        if (f & F_TABLED) {
            ix->n_tombstones--;
            ix->n_tabled++;
        } else {
            ix->n_group_tombstones--;
            ix->n_grouped++;
            group_count(ix, id, +1);
        }
        return 0;
    }
    if (f & F_TABLED) { /* the tables hold its old fingerprint: take those entries back */
        punch_holes(ix, &id, 1);
        if (f & F_LIVE)
            ix->n_tabled--;
        else
            ix->n_tombstones--;
    }
    if (f & F_GROUPED)
        group_detach(ix, id);
    f = flags[id] & ~(F_TABLED | F_GROUPED | F_TAIL);
    memcpy(slot, stored, FP_BYTES);
    if (ix->tags.p)
        ((uint16_t *)ix->tags.p)[id] = (uint16_t)tag;
    if (!(f & F_OVERFLOW)) {
        size_t need = (ix->n_overflow + 1) * sizeof(uint32_t);
        if (need > ix->overflow.bytes && buf_resize(&ix->overflow, need < 4096 ? 4096 : 2 * need) < 0)
            return -1;
        ((uint32_t *)ix->overflow.p)[ix->n_overflow++] = id;
        f |= F_OVERFLOW;
    }
    if (!(f & F_LIVE))
        ix->n_live++;
    flags[id] = f | F_LIVE;
    return 0;
}

static int remove_item(Index *ix, uint32_t id)
{
    if (id >= ix->limit)
        return 0;
    uint8_t *flags = ix->flags.p;
    if (!(flags[id] & F_LIVE))
        return 0;
    if (flags[id] & F_TABLED) {
        ix->n_tabled--;
        ix->n_tombstones++;
    } else if (flags[id] & F_GROUPED) {
        group_count(ix, id, -1);
        ix->n_grouped--;
        ix->n_group_tombstones++;
    }
    flags[id] &= ~F_LIVE;
    ix->n_live--;
    return 1;
}

static int maybe_merge(Index *ix)
{
    if (!ix->deferred && ix->n_overflow > ix->overflow_max)
        return merge_overflow(ix, 2);
    return 0;
}

/* Tombstones cost a wasted check each; compact when they are a quarter of the entries. */
static int maybe_compact(Index *ix)
{
    size_t dead = ix->n_tombstones + ix->n_holes + ix->n_group_tombstones;
    if (!ix->deferred && ix->built && dead > 65536 && dead > (ix->n_tabled + ix->n_grouped) / 4)
        return rebuild(ix, 2);
    return 0;
}

/* ------------------------------------------------------------------ batch */

typedef struct {
    uint32_t query, id, dist;
} Triple;

typedef struct {
    const Index *ix;
    const uint8_t *queries;
    size_t n;
    const Ask *ask;
    const Plan *plan;
    uint64_t *totals; /* per query */
    size_t next;      /* shared query cursor */
    int failed;
} BatchJob;

typedef struct {
    BatchJob *job;
    Triple *out;
    size_t n_out, out_cap;
} BatchWorker;

#define BATCH_BLOCK 8

static void *batch_worker(void *arg)
{
    BatchWorker *w = arg;
    BatchJob *job = w->job;
    Scratch s;
    memset(&s, 0, sizeof s);
    for (;;) {
        size_t first = __atomic_fetch_add(&job->next, BATCH_BLOCK, __ATOMIC_RELAXED);
        if (first >= job->n)
            break;
        size_t last = first + BATCH_BLOCK < job->n ? first + BATCH_BLOCK : job->n;
        for (size_t qi = first; qi < last; qi++) {
            if (search_one(job->ix, job->queries + qi * FP_BYTES, job->ask, job->plan, &s) < 0 ||
                grow((void **)&w->out, &w->out_cap, w->n_out + s.n_hits, sizeof(Triple)) < 0) {
                __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
                goto done;
            }
            job->totals[qi] = s.total;
            for (size_t h = 0; h < s.n_hits; h++) {
                w->out[w->n_out].query = (uint32_t)qi;
                w->out[w->n_out].id = s.hits[h].id;
                w->out[w->n_out].dist = s.hits[h].dist;
                w->n_out++;
            }
        }
    }
done:
    scratch_free(&s);
    return NULL;
}

/* ------------------------------------------------------------------ Python glue */

static int parse_threshold(PyObject *arg, int fallback, int *out)
{
    if (arg == NULL || arg == Py_None) {
        *out = fallback;
        return 0;
    }
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || v > MAX_THRESHOLD) {
        PyErr_Format(PyExc_ValueError, "threshold must be between 0 and %d, not %ld", MAX_THRESHOLD, v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int get_id(PyObject *arg, uint32_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(arg);
    if ((v == (unsigned long long)-1 && PyErr_Occurred()) || v > MAX_ID) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "an id must be an integer between 0 and %lu", (unsigned long)MAX_ID);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int get_buffer(PyObject *obj, Py_buffer *view, size_t item, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->len % item) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %zu-byte items", what, view->len,
                     item);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The thresholds of a search: `threshold` (or the index's) for every tag, unless
 * `thresholds` (int16 per tag; negative = never) says otherwise for some tags. The
 * buffer stays held by the caller until the search ends. */
static int parse_ask(Index *ix, PyObject *threshold, PyObject *thresholds, Py_ssize_t limit, Ask *a,
                     Py_buffer *view, int *have_view)
{
    *have_view = 0;
    if (parse_threshold(threshold, ix->threshold, &a->tdefault) < 0)
        return -1;
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "limit must not be negative");
        return -1;
    }
    a->limit = (size_t)limit;
    a->tmax = a->tdefault;
    a->thr = NULL;
    a->n_thr = 0;
    if (thresholds && thresholds != Py_None) {
        if (get_buffer(thresholds, view, 2, "thresholds (int16)") < 0)
            return -1;
        *have_view = 1;
        a->thr = view->buf;
        a->n_thr = (size_t)view->len / 2;
        for (size_t i = 0; i < a->n_thr; i++) {
            if (a->thr[i] > MAX_THRESHOLD) {
                PyErr_Format(PyExc_ValueError, "thresholds must be at most %d", MAX_THRESHOLD);
                PyBuffer_Release(view);
                *have_view = 0;
                return -1;
            }
            if (a->thr[i] > a->tmax)
                a->tmax = a->thr[i];
        }
    }
    return 0;
}

/* Take the read lock for introspection with the GIL released while waiting: a writer
 * (a merge, a rebuild) holds the lock without the GIL, and waiting for it with the GIL
 * held would stop every Python thread of the process, the match API's included. */
#define READ_LOCK(ix)                                                                                               \
    do {                                                                                                            \
        Py_BEGIN_ALLOW_THREADS pthread_rwlock_rdlock(&(ix)->lock);                                                  \
        Py_END_ALLOW_THREADS                                                                                        \
    } while (0)

#define WRITE_LOCKED(ix, stmt)                                                                                      \
    do {                                                                                                            \
        Py_BEGIN_ALLOW_THREADS pthread_rwlock_wrlock(&(ix)->lock);                                                  \
        stmt;                                                                                                       \
        pthread_rwlock_unlock(&(ix)->lock);                                                                         \
        Py_END_ALLOW_THREADS                                                                                        \
    } while (0)

static PyObject *Index_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"widths", "threshold", "overflow_max", "partition", NULL};
    PyObject *widths_obj = Py_None;
    int threshold = 31, partition = 1;
    Py_ssize_t overflow_max = 32768;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Oinp", kwlist, &widths_obj, &threshold, &overflow_max,
                                     &partition))
        return NULL;
    if (threshold < 0 || threshold > MAX_THRESHOLD) {
        PyErr_Format(PyExc_ValueError, "threshold must be between 0 and %d", MAX_THRESHOLD);
        return NULL;
    }
    if (overflow_max < 0) {
        PyErr_SetString(PyExc_ValueError, "overflow_max must not be negative");
        return NULL;
    }
    int widths[MAX_TABLES], m = 0;
    if (widths_obj != Py_None) {
        PyObject *seq = PySequence_Fast(widths_obj, "widths must be a sequence of integers");
        if (!seq)
            return NULL;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        int total = 0;
        if (n < 1 || n > MAX_TABLES) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "between 1 and %d table widths are needed", MAX_TABLES);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            long w = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
            if (w < MIN_WIDTH || w > MAX_WIDTH) {
                Py_DECREF(seq);
                if (!PyErr_Occurred())
                    PyErr_Format(PyExc_ValueError, "each table width must be between %d and %d bits", MIN_WIDTH,
                                 MAX_WIDTH);
                return NULL;
            }
            widths[m++] = (int)w;
            total += (int)w;
        }
        Py_DECREF(seq);
        if (total > FP_BITS) {
            PyErr_Format(PyExc_ValueError, "table widths add up to %d bits; a PDQ fingerprint has 256", total);
            return NULL;
        }
    }
    Index *ix = (Index *)type->tp_alloc(type, 0);
    if (!ix)
        return NULL;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
#ifdef __GLIBC__
    /* batch searches must not starve a withdrawal waiting for the write lock */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    if (pthread_rwlock_init(&ix->lock, &attr) != 0) {
        pthread_rwlockattr_destroy(&attr);
        Py_DECREF(ix);
        PyErr_SetString(PyExc_OSError, "cannot create the index lock");
        return NULL;
    }
    pthread_rwlockattr_destroy(&attr);
    ix->lock_ready = 1;
    ix->threshold = threshold;
    ix->overflow_max = (size_t)overflow_max;
    ix->auto_geometry = m == 0;
    ix->auto_partition = partition;
    for (int p = 0; p < FP_BITS; p++)
        ix->perm[p] = (uint8_t)p;
    if (m)
        set_geometry(ix, widths, m);
    return (PyObject *)ix;
}

static void Index_dealloc(Index *ix)
{
    free_tables(ix);
    for (int w = 0; w <= MAX_WIDTH; w++)
        for (int r = 0; r <= MAX_RHO; r++)
            free(ix->masks[w].m[r]);
    for (size_t g = 0; g < ix->n_groups; g++) {
        free(ix->groups[g].ids);
        free_postings(&ix->groups[g]);
    }
    free(ix->groups);
    free(ix->lut);
    free(ix->inverse);
    buf_free(&ix->fp);
    buf_free(&ix->flags);
    buf_free(&ix->tags);
    buf_free(&ix->group_of);
    buf_free(&ix->overflow);
    if (ix->lock_ready)
        pthread_rwlock_destroy(&ix->lock);
    Py_TYPE(ix)->tp_free((PyObject *)ix);
}

static PyObject *Index_add(Index *ix, PyObject *args)
{
    PyObject *id_obj;
    Py_buffer fpv;
    uint32_t id;
    int tag = 0;
    if (!PyArg_ParseTuple(args, "Oy*|i", &id_obj, &fpv, &tag))
        return NULL;
    if (fpv.len != FP_BYTES) {
        PyErr_Format(PyExc_ValueError, "a PDQ fingerprint is 32 bytes, not %zd", fpv.len);
        PyBuffer_Release(&fpv);
        return NULL;
    }
    if (tag < 0 || tag > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "a tag is an integer between 0 and 65535");
        PyBuffer_Release(&fpv);
        return NULL;
    }
    if (get_id(id_obj, &id) < 0) {
        PyBuffer_Release(&fpv);
        return NULL;
    }
    int rc;
    WRITE_LOCKED(ix, rc = add_item(ix, id, fpv.buf, tag); if (rc == 0) rc = maybe_merge(ix));
    PyBuffer_Release(&fpv);
    if (rc < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Index_add_many(Index *ix, PyObject *args)
{
    PyObject *ids_obj, *fps_obj, *tags_obj = Py_None;
    Py_buffer idv, fpv, tagv;
    if (!PyArg_ParseTuple(args, "OO|O", &ids_obj, &fps_obj, &tags_obj))
        return NULL;
    if (get_buffer(ids_obj, &idv, 4, "ids (uint32)") < 0)
        return NULL;
    if (get_buffer(fps_obj, &fpv, FP_BYTES, "fingerprints") < 0) {
        PyBuffer_Release(&idv);
        return NULL;
    }
    int have_tags = tags_obj != Py_None;
    if (have_tags && get_buffer(tags_obj, &tagv, 2, "tags (uint16)") < 0) {
        PyBuffer_Release(&idv);
        PyBuffer_Release(&fpv);
        return NULL;
    }
    size_t n = (size_t)idv.len / 4;
    const char *problem = NULL;
    if ((size_t)fpv.len / FP_BYTES != n)
        problem = "as many fingerprints as ids are needed";
    else if (have_tags && (size_t)tagv.len / 2 != n)
        problem = "as many tags as ids are needed";
    const uint32_t *ids = idv.buf;
    for (size_t i = 0; !problem && i < n; i++)
        if (ids[i] > MAX_ID)
            problem = "an id is beyond the largest id (2**31 - 2)";
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        PyBuffer_Release(&idv);
        PyBuffer_Release(&fpv);
        if (have_tags)
            PyBuffer_Release(&tagv);
        return NULL;
    }
    const uint16_t *tags = have_tags ? tagv.buf : NULL;
    int rc = 0;
    WRITE_LOCKED(ix, {
        uint32_t top = 0;
        for (size_t i = 0; i < n; i++)
            if (ids[i] > top)
                top = ids[i];
        if (n)
            rc = ensure_limit(ix, top);
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = add_item(ix, ids[i], (const uint8_t *)fpv.buf + i * FP_BYTES, tags ? tags[i] : 0);
        if (rc == 0)
            rc = maybe_merge(ix);
    });
    PyBuffer_Release(&idv);
    PyBuffer_Release(&fpv);
    if (have_tags)
        PyBuffer_Release(&tagv);
    if (rc < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Index_remove(Index *ix, PyObject *arg)
{
    uint32_t id;
    if (get_id(arg, &id) < 0)
        return NULL;
    int removed, rc;
    WRITE_LOCKED(ix, removed = remove_item(ix, id); rc = maybe_compact(ix));
    if (rc < 0)
        return PyErr_NoMemory();
    return PyBool_FromLong(removed);
}

static PyObject *Index_remove_many(Index *ix, PyObject *arg)
{
    Py_buffer idv;
    if (get_buffer(arg, &idv, 4, "ids (uint32)") < 0)
        return NULL;
    size_t n = (size_t)idv.len / 4, removed = 0;
    const uint32_t *ids = idv.buf;
    int rc = 0;
    WRITE_LOCKED(ix, {
        for (size_t i = 0; i < n; i++)
            removed += remove_item(ix, ids[i]);
        rc = maybe_compact(ix);
    });
    PyBuffer_Release(&idv);
    if (rc < 0)
        return PyErr_NoMemory();
    return PyLong_FromSize_t(removed);
}

static PyObject *Index_search(Index *ix, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fingerprint", "threshold", "mode", "limit", "thresholds", NULL};
    Py_buffer qv, tv;
    PyObject *thr = Py_None, *thresholds = Py_None;
    int mode = 0, have_tv;
    Py_ssize_t limit = 0;
    Ask a;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*|OinO", kwlist, &qv, &thr, &mode, &limit, &thresholds))
        return NULL;
    if (qv.len != FP_BYTES) {
        PyErr_Format(PyExc_ValueError, "a PDQ fingerprint is 32 bytes, not %zd", qv.len);
        PyBuffer_Release(&qv);
        return NULL;
    }
    if (parse_ask(ix, thr, thresholds, limit, &a, &tv, &have_tv) < 0) {
        PyBuffer_Release(&qv);
        return NULL;
    }
    Scratch s;
    memset(&s, 0, sizeof s);
    int rc;
    Py_BEGIN_ALLOW_THREADS pthread_rwlock_rdlock(&ix->lock);
    Plan plan;
    make_plan(ix, a.tmax, mode, &plan);
    rc = search_one(ix, qv.buf, &a, &plan, &s);
    pthread_rwlock_unlock(&ix->lock);
    Py_END_ALLOW_THREADS PyBuffer_Release(&qv);
    if (have_tv)
        PyBuffer_Release(&tv);
    if (rc < 0) {
        scratch_free(&s);
        return PyErr_NoMemory();
    }
    PyObject *list = PyList_New((Py_ssize_t)s.n_hits);
    for (size_t i = 0; list && i < s.n_hits; i++) {
        PyObject *pair = Py_BuildValue("(kI)", (unsigned long)s.hits[i].id, s.hits[i].dist);
        if (!pair) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, pair);
    }
    uint64_t total = s.total;
    scratch_free(&s);
    if (!list)
        return NULL;
    return Py_BuildValue("(NK)", list, (unsigned long long)total);
}

static PyObject *Index_search_many(Index *ix, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fingerprints", "threshold", "threads", "mode", "limit", "thresholds", NULL};
    PyObject *fps_obj, *thr = Py_None, *thresholds = Py_None;
    int threads = 2, mode = 0, have_tv;
    Py_ssize_t limit = 0;
    Py_buffer qv, tv;
    Ask a;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OiinO", kwlist, &fps_obj, &thr, &threads, &mode, &limit,
                                     &thresholds))
        return NULL;
    if (parse_ask(ix, thr, thresholds, limit, &a, &tv, &have_tv) < 0)
        return NULL;
    if (get_buffer(fps_obj, &qv, FP_BYTES, "fingerprints") < 0) {
        if (have_tv)
            PyBuffer_Release(&tv);
        return NULL;
    }
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    size_t n = (size_t)qv.len / FP_BYTES;
    PyObject *totals_obj = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * sizeof(uint64_t)));
    if (!totals_obj) {
        PyBuffer_Release(&qv);
        if (have_tv)
            PyBuffer_Release(&tv);
        return NULL;
    }
    Plan plan;
    BatchJob job = {ix, qv.buf, n, &a, &plan, (uint64_t *)PyBytes_AS_STRING(totals_obj), 0, 0};
    BatchWorker workers[64];
    memset(workers, 0, sizeof workers);
    Py_BEGIN_ALLOW_THREADS pthread_rwlock_rdlock(&ix->lock);
    make_plan(ix, a.tmax, mode, &plan);
    pthread_t th[64];
    int started = 0;
    size_t want = (n + BATCH_BLOCK - 1) / BATCH_BLOCK;
    for (int i = 1; i < threads && (size_t)i < want; i++) {
        workers[i].job = &job;
        if (pthread_create(&th[started], NULL, batch_worker, &workers[i]) == 0)
            started++;
    }
    workers[0].job = &job;
    batch_worker(&workers[0]);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_rwlock_unlock(&ix->lock);
    Py_END_ALLOW_THREADS PyBuffer_Release(&qv);
    if (have_tv)
        PyBuffer_Release(&tv);
    PyObject *result = NULL;
    if (job.failed)
        PyErr_NoMemory();
    else {
        size_t total = 0;
        for (int i = 0; i < 64; i++)
            total += workers[i].n_out;
        PyObject *hits = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(total * sizeof(Triple)));
        if (hits) {
            char *dst = PyBytes_AS_STRING(hits);
            for (int i = 0; i < 64; i++) {
                memcpy(dst, workers[i].out, workers[i].n_out * sizeof(Triple));
                dst += workers[i].n_out * sizeof(Triple);
            }
            result = PyTuple_Pack(2, hits, totals_obj);
            Py_DECREF(hits);
        }
    }
    Py_DECREF(totals_obj);
    for (int i = 0; i < 64; i++)
        free(workers[i].out);
    return result;
}

static PyObject *Index_rebuild(Index *ix, PyObject *Py_UNUSED(ignored))
{
    int rc;
    WRITE_LOCKED(ix, rc = rebuild(ix, 2));
    if (rc < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Index_flush(Index *ix, PyObject *Py_UNUSED(ignored))
{
    int rc = 0;
    WRITE_LOCKED(ix, if (!ix->deferred && ix->n_overflow) rc = merge_overflow(ix, 2));
    if (rc < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Index_set_deferred(Index *ix, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    WRITE_LOCKED(ix, ix->deferred = on);
    Py_RETURN_NONE;
}

static PyObject *input_order(const Index *ix, const uint8_t *stored)
{
    uint8_t out[FP_BYTES];
    if (ix->permuted)
        perm_apply(ix->inverse, stored, out);
    else
        memcpy(out, stored, FP_BYTES);
    return PyBytes_FromStringAndSize((const char *)out, FP_BYTES);
}

static PyObject *Index_get(Index *ix, PyObject *arg)
{
    uint32_t id;
    if (get_id(arg, &id) < 0)
        return NULL;
    PyObject *r = NULL;
    READ_LOCK(ix);
    if (id < ix->limit && (((uint8_t *)ix->flags.p)[id] & F_LIVE))
        r = input_order(ix, fp_of(ix, id));
    pthread_rwlock_unlock(&ix->lock);
    if (!r && !PyErr_Occurred())
        Py_RETURN_NONE;
    return r;
}

static PyObject *Index_plan(Index *ix, PyObject *args)
{
    int threshold, mode = 0;
    if (!PyArg_ParseTuple(args, "i|i", &threshold, &mode))
        return NULL;
    Plan plan;
    READ_LOCK(ix);
    make_plan(ix, threshold, mode, &plan);
    pthread_rwlock_unlock(&ix->lock);
    PyObject *radii = PyList_New(ix->ntables);
    for (int t = 0; radii && t < ix->ntables; t++)
        PyList_SET_ITEM(radii, t, PyLong_FromLong(plan.rho[t]));
    return Py_BuildValue("{s:O,s:N,s:d}", "scan", plan.scan ? Py_True : Py_False, "radii", radii, "cost_ns",
                         plan.cost);
}

/* Groups with at least `min_live` live members (of `tag`, unless negative). */
static PyObject *Index_clusters(Index *ix, PyObject *args)
{
    Py_ssize_t min_live = 0;
    int tag = -1;
    if (!PyArg_ParseTuple(args, "|ni", &min_live, &tag))
        return NULL;
    PyObject *list = PyList_New(0);
    READ_LOCK(ix);
    for (size_t gi = 0; list && gi < ix->n_groups; gi++) {
        const Group *g = &ix->groups[gi];
        if ((Py_ssize_t)g->n_live < min_live || (tag >= 0 && (int)g->tag != tag))
            continue;
        PyObject *item = Py_BuildValue("{s:n,s:i,s:N,s:i,s:n}", "group", (Py_ssize_t)gi, "tag", (int)g->tag,
                                       "centre", input_order(ix, g->centre), "radius", (int)g->radius, "live",
                                       (Py_ssize_t)g->n_live);
        if (!item || PyList_Append(list, item) < 0)
            Py_CLEAR(list);
        Py_XDECREF(item);
    }
    pthread_rwlock_unlock(&ix->lock);
    return list;
}

static PyObject *Index_cluster_members(Index *ix, PyObject *arg)
{
    Py_ssize_t gi = PyLong_AsSsize_t(arg);
    if (gi == -1 && PyErr_Occurred())
        return NULL;
    PyObject *out = NULL;
    READ_LOCK(ix);
    if (gi < 0 || (size_t)gi >= ix->n_groups) {
        pthread_rwlock_unlock(&ix->lock);
        PyErr_SetString(PyExc_ValueError, "no such group");
        return NULL;
    }
    const Group *g = &ix->groups[gi];
    const uint8_t *flags = ix->flags.p;
    uint32_t *ids = malloc((g->n_ids ? g->n_ids : 1) * sizeof(uint32_t));
    size_t n = 0;
    for (uint32_t i = 0; ids && i < g->n_ids; i++)
        if ((flags[g->ids[i]] & F_LIVE) && is_member(ix, (uint32_t)gi, g->ids[i]))
            ids[n++] = g->ids[i];
    pthread_rwlock_unlock(&ix->lock);
    if (!ids)
        return PyErr_NoMemory();
    qsort(ids, n, sizeof(uint32_t), cmp_u32);
    out = PyBytes_FromStringAndSize((const char *)ids, (Py_ssize_t)(n * sizeof(uint32_t)));
    free(ids);
    return out;
}

static PyObject *Index_stats(Index *ix, PyObject *Py_UNUSED(ignored))
{
    READ_LOCK(ix);
    size_t table_bytes = 0, group_bytes = ix->cap_groups * sizeof(Group) + ix->group_of.bytes;
    PyObject *widths = PyList_New(ix->ntables);
    for (int t = 0; t < ix->ntables; t++) {
        table_bytes += ix->tables[t].off.bytes + ix->tables[t].ids.bytes;
        if (widths)
            PyList_SET_ITEM(widths, t, PyLong_FromLong(ix->tables[t].width));
    }
    for (size_t g = 0; g < ix->n_groups; g++) {
        const Group *gr = &ix->groups[g];
        group_bytes += (size_t)gr->cap_ids * sizeof(uint32_t);
        if (gr->post_off)
            group_bytes += ((size_t)(GROUP_RADIUS + 1) * FP_BITS + 1 + gr->post_off[(GROUP_RADIUS + 1) * FP_BITS]) *
                           sizeof(uint32_t);
    }
    PyObject *r = Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:N,s:n,s:n,s:n,s:n,s:i,s:i,s:n,s:n,s:n,s:O,s:(dd),s:O}", "live",
        (Py_ssize_t)ix->n_live, "tabled", (Py_ssize_t)ix->n_tabled, "grouped", (Py_ssize_t)ix->n_grouped, "groups",
        (Py_ssize_t)ix->n_groups, "overflow", (Py_ssize_t)ix->n_overflow, "tombstones",
        (Py_ssize_t)(ix->n_tombstones + ix->n_group_tombstones), "holes", (Py_ssize_t)ix->n_holes, "id_limit",
        (Py_ssize_t)ix->limit, "groups_formed", (Py_ssize_t)ix->n_groups_formed, "group_bytes",
        (Py_ssize_t)group_bytes, "widths", widths, "table_bytes", (Py_ssize_t)table_bytes, "fingerprint_bytes",
        (Py_ssize_t)(ix->fp.bytes + ix->flags.bytes + ix->tags.bytes), "overflow_max", (Py_ssize_t)ix->overflow_max,
        "merges", (Py_ssize_t)ix->n_merges, "built", ix->built, "threshold", ix->threshold, "rebuilds",
        (Py_ssize_t)ix->n_rebuilds, "group_radius", (Py_ssize_t)GROUP_RADIUS, "group_min", (Py_ssize_t)GROUP_MIN,
        "permuted", ix->permuted ? Py_True : Py_False, "partition_objective", ix->partition_objective[0],
        ix->partition_objective[1], "calibrated", ix->calibrated ? Py_True : Py_False);
    if (r) {
        PyObject *work = Py_BuildValue("{s:K,s:K,s:K,s:K}", "queries", (unsigned long long)ix->work[0], "probes",
                                       (unsigned long long)ix->work[1], "candidates", (unsigned long long)ix->work[2],
                                       "member_reads", (unsigned long long)ix->work[3]);
        if (!work || PyDict_SetItemString(r, "work", work) < 0)
            Py_CLEAR(r);
        Py_XDECREF(work);
    }
    pthread_rwlock_unlock(&ix->lock);
    return r;
}

static Py_ssize_t Index_len(Index *ix) { return (Py_ssize_t)ix->n_live; }

static PyMethodDef Index_methods[] = {
    {"add", (PyCFunction)Index_add, METH_VARARGS, "add(id, fingerprint, tag=0): add or replace one item."},
    {"add_many", (PyCFunction)Index_add_many, METH_VARARGS,
     "add_many(ids, fingerprints, tags=None): uint32 ids, n*32 bytes of fingerprints, uint16 tags (buffers)."},
    {"remove", (PyCFunction)Index_remove, METH_O, "remove(id) -> bool: takes effect for every later search."},
    {"remove_many", (PyCFunction)Index_remove_many, METH_O, "remove_many(ids) -> number removed (uint32 buffer)."},
    {"search", (PyCFunction)(void (*)(void))Index_search, METH_VARARGS | METH_KEYWORDS,
     "search(fingerprint, threshold=None, mode=0, limit=0, thresholds=None) -> ([(id, distance)], total);\n"
     "mode 0 auto, 1 tables, 2 scan; limit 0 = every match, else the nearest (sorted)."},
    {"search_many", (PyCFunction)(void (*)(void))Index_search_many, METH_VARARGS | METH_KEYWORDS,
     "search_many(fingerprints, threshold=None, threads=2, mode=0, limit=0, thresholds=None)\n"
     "-> (bytes of uint32 (query, id, distance), bytes of uint64 totals per query)."},
    {"rebuild", (PyCFunction)Index_rebuild, METH_NOARGS, "Rebuild the tables from the live items."},
    {"flush", (PyCFunction)Index_flush, METH_NOARGS, "Merge the overflow list now (groups form at merges)."},
    {"set_deferred", (PyCFunction)Index_set_deferred, METH_O, "While true, adds are not merged into the tables."},
    {"get", (PyCFunction)Index_get, METH_O, "get(id) -> fingerprint bytes or None."},
    {"plan", (PyCFunction)Index_plan, METH_VARARGS, "plan(threshold, mode=0) -> how a search would run."},
    {"clusters", (PyCFunction)Index_clusters, METH_VARARGS,
     "clusters(min_live=0, tag=-1) -> [{group, tag, centre, radius, live}] of the groups."},
    {"cluster_members", (PyCFunction)Index_cluster_members, METH_O,
     "cluster_members(group) -> bytes of the uint32 ids of its live members, sorted."},
    {"stats", (PyCFunction)Index_stats, METH_NOARGS, "Counts and memory of the index."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Index_as_sequence = {
    .sq_length = (lenfunc)Index_len,
};

static PyTypeObject IndexType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "node.matcher._pdqindex.Index",
    .tp_basicsize = sizeof(Index),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Exact in-memory index of PDQ fingerprints (see node.matcher.pdq_index).",
    .tp_new = Index_new,
    .tp_dealloc = (destructor)Index_dealloc,
    .tp_methods = Index_methods,
    .tp_as_sequence = &Index_as_sequence,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pdqindex", "Compiled core of node.matcher.pdq_index.", -1, NULL,
};

PyMODINIT_FUNC PyInit__pdqindex(void)
{
    if (PyType_Ready(&IndexType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&IndexType);
    if (PyModule_AddObject(m, "Index", (PyObject *)&IndexType) < 0) {
        Py_DECREF(&IndexType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "MAX_THRESHOLD", MAX_THRESHOLD);
    PyModule_AddIntConstant(m, "MAX_ID", (long)MAX_ID);
    PyModule_AddIntConstant(m, "GROUP_RADIUS", GROUP_RADIUS);
    PyModule_AddIntConstant(m, "GROUP_MIN", GROUP_MIN);
    return m;
}
