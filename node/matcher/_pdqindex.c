/*
 * _pdqindex: an exact in-memory index of 256-bit PDQ fingerprints (compiled core).
 *
 * Exactness rests on one invariant, checked nowhere else: every item that is live
 * is either in the multi-index tables under its current fingerprint (flag TABLED)
 * or listed in the overflow list (which is scanned linearly by every query).
 *
 * Layout (see spec/parts/matching.md for the prose and the figures):
 *   fp[id*32 .. id*32+32)   the fingerprint of item `id`; ids index this array directly.
 *   flags[id]               LIVE / TABLED / OVERFLOW / STALE bits of item `id`.
 *   table t                 the fingerprint bits [start_t, start_t + width_t) form the
 *                           table key; ids[off[k] .. off[k+1]) are the items whose key is
 *                           k (compressed sparse rows: one uint32 offset per possible key,
 *                           one uint32 id per item).
 *   overflow                ids added since the tables were last merged; scanned linearly.
 *
 * Search with threshold T picks a radius rho_t for some tables such that
 * sum over the chosen tables of (rho_t + 1) >= T + 1. By pigeonhole, any fingerprint
 * within distance T of the query then has, in at least one chosen table, a key within
 * distance rho_t of the query's key: probing every key within rho_t in every chosen
 * table reaches it. A hit is reported only from the first chosen table where it
 * qualifies, so nobody is reported twice and no "visited" set is needed.
 *
 * Removal clears LIVE at once (tables keep a tombstone until the next rebuild);
 * adds go to the overflow list and are merged into the tables in bulk.
 * Concurrency: searches take a read lock and run without the GIL (batches on several
 * threads); mutations take the write lock.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

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
#define MAX_ID 0xFFFFFFFEu

#define F_LIVE 1u     /* the item is in the index */
#define F_TABLED 2u   /* the tables hold the item under its current fingerprint */
#define F_OVERFLOW 4u /* the item is listed in the overflow list */
#define F_STALE 8u    /* the tables hold the item under an older fingerprint */

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

/* A small growable array for per-query scratch space. */
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

/* ------------------------------------------------------------------ index */

typedef struct {
    int start, width;
    Buf off; /* uint32[2^width + 1] */
    Buf ids; /* uint32[count] */
    size_t count;
} Table;

typedef struct {
    uint32_t *m[MAX_RHO + 1]; /* masks of `width` bits with exactly r bits set */
    size_t n[MAX_RHO + 1];
} MaskSet;

typedef struct {
    PyObject_HEAD
    int ntables;
    Table tables[MAX_TABLES];
    MaskSet masks[MAX_WIDTH + 1];
    int auto_geometry;     /* choose widths from the item count at each rebuild */
    size_t geometry_items; /* item count the current widths were chosen for */
    int built;             /* the tables exist */

    Buf fp;             /* uint8[limit * 32] */
    Buf flags;          /* uint8[limit] */
    size_t limit;       /* ids < limit have storage */
    Buf overflow;       /* uint32[n_overflow] */
    size_t n_overflow;
    size_t overflow_max; /* merge the overflow into the tables beyond this many */
    int deferred;        /* bulk loading: no merges until rebuild() */

    size_t n_live, n_stale, n_tombstones, n_tabled;
    size_t n_merges, n_rebuilds; /* how often the tables changed, for tests and benchmarks */
    int threshold;
    pthread_rwlock_t lock;
    int lock_ready;
} Index;

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
    ix->limit = cap;
    return 0;
}

static void free_tables(Index *ix)
{
    for (int t = 0; t < MAX_TABLES; t++) {
        buf_free(&ix->tables[t].off);
        buf_free(&ix->tables[t].ids);
        ix->tables[t].count = 0;
    }
    ix->built = 0;
}

/* Counting sort of the live items by their key in table t. The keys of the first
 * pass are kept (4 bytes per item) so that the second pass reads them instead of
 * every fingerprint again, and can prefetch the offsets it is about to bump. */
static int build_table(Index *ix, int t)
{
    Table *tb = &ix->tables[t];
    size_t nb = (size_t)1 << tb->width;
    buf_free(&tb->off);
    buf_free(&tb->ids);
    if (buf_resize(&tb->off, (nb + 1) * sizeof(uint32_t)) < 0)
        return -1;
    Buf keybuf = {0};
    if (ix->n_live && buf_resize(&keybuf, ix->n_live * sizeof(uint32_t)) < 0)
        return -1;
    uint32_t *off = tb->off.p, *keys = keybuf.p;
    const uint8_t *fp = ix->fp.p, *flags = ix->flags.p;
    size_t count = 0;
    for (size_t id = 0; id < ix->limit && count < ix->n_live; id++)
        if (flags[id] & F_LIVE) {
            uint32_t k = chunk_of(fp + id * FP_BYTES, tb->start, tb->width);
            keys[count++] = k;
            off[k + 1]++;
        }
    for (size_t k = 0; k < nb; k++)
        off[k + 1] += off[k];
    if (count && buf_resize(&tb->ids, count * sizeof(uint32_t)) < 0) {
        buf_free(&keybuf);
        return -1;
    }
    uint32_t *ids = tb->ids.p;
    /* off[k] walks from the start of bucket k to its end, which is the start of k+1 */
    size_t j = 0;
    for (size_t id = 0; j < count; id++)
        if (flags[id] & F_LIVE) {
            if (j + 16 < count)
                __builtin_prefetch(off + keys[j + 16], 1);
            ids[off[keys[j]]++] = (uint32_t)id;
            j++;
        }
    buf_free(&keybuf);
    memmove(off + 1, off, nb * sizeof(uint32_t));
    off[0] = 0;
    tb->count = count;
    return 0;
}

typedef struct {
    Index *ix;
    int next; /* shared table cursor */
    int failed;
} BuildJob;

static void *build_worker(void *arg)
{
    BuildJob *job = arg;
    for (;;) {
        int t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (t >= job->ix->ntables)
            break;
        if (build_table(job->ix, t) < 0)
            __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* Rebuild every table from the live items (caller holds the write lock).
 * Drops tombstones and stale entries and empties the overflow list. */
static int rebuild(Index *ix, int nthreads)
{
    if (ix->auto_geometry) {
        int widths[MAX_TABLES];
        int m = auto_widths(ix->n_live, widths);
        free_tables(ix);
        set_geometry(ix, widths, m);
        ix->geometry_items = ix->n_live;
    } else {
        free_tables(ix);
    }
    for (int t = 0; t < ix->ntables; t++)
        if (masks_prepare(ix, ix->tables[t].width) < 0)
            return -1;
    BuildJob job = {ix, 0, 0};
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > ix->ntables)
        nthreads = ix->ntables;
    pthread_t th[16];
    int started = 0;
    for (int i = 1; i < nthreads && i < 16; i++)
        if (pthread_create(&th[started], NULL, build_worker, &job) == 0)
            started++;
    build_worker(&job);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (job.failed) {
        free_tables(ix);
        return -1;
    }
    uint8_t *flags = ix->flags.p;
    for (size_t id = 0; id < ix->limit; id++)
        flags[id] = (flags[id] & F_LIVE) ? (F_LIVE | F_TABLED) : 0;
    ix->n_overflow = 0;
    buf_resize(&ix->overflow, 0);
    ix->n_stale = ix->n_tombstones = 0;
    ix->n_tabled = ix->n_live;
    ix->built = 1;
    ix->n_rebuilds++;
    return 0;
}

typedef struct {
    uint32_t key, id;
} KeyId;

static int cmp_keyid(const void *a, const void *b)
{
    const KeyId *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key ? 1 : (x->id < y->id ? -1 : x->id > y->id);
}

/* Merge new items into table t in place: old buckets move up from the top down with
 * memmove (sequential traffic, no allocation beyond growing the id array). */
static int merge_table(Index *ix, int t, const uint32_t *new_ids, size_t m, KeyId *pairs)
{
    Table *tb = &ix->tables[t];
    const uint8_t *fp = ix->fp.p;
    for (size_t i = 0; i < m; i++) {
        pairs[i].key = chunk_of(fp + (size_t)new_ids[i] * FP_BYTES, tb->start, tb->width);
        pairs[i].id = new_ids[i];
    }
    qsort(pairs, m, sizeof(KeyId), cmp_keyid);
    size_t n = tb->count;
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
        for (size_t i = g; i < j; i++) /* the group goes after bucket k's old items */
            ids[from + g + (i - g)] = pairs[i].id;
        end = from;
        j = g;
    }
    /* off[b] grows by the number of new items with key < b (plain loops: vectorized) */
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

typedef struct {
    Index *ix;
    const uint32_t *ids;
    size_t m;
    int next; /* shared table cursor */
    int failed;
} MergeJob;

static void *merge_worker(void *arg)
{
    MergeJob *job = arg;
    KeyId *pairs = malloc((job->m ? job->m : 1) * sizeof(KeyId));
    for (;;) {
        int t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (t >= job->ix->ntables)
            break;
        if (!pairs || merge_table(job->ix, t, job->ids, job->m, pairs) < 0)
            __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
    }
    free(pairs);
    return NULL;
}

/* Move the overflow list into the tables (caller holds the write lock). */
static int merge_overflow(Index *ix, int nthreads)
{
    int regeometry = ix->auto_geometry && ix->n_live > 2 * ix->geometry_items + 4096;
    if (!ix->built || ix->n_stale || regeometry || ix->n_tombstones > ix->n_tabled / 4 ||
        ix->n_overflow > ix->n_tabled / 2)
        return rebuild(ix, nthreads);
    uint32_t *ov = ix->overflow.p;
    uint8_t *flags = ix->flags.p;
    size_t m = 0;
    for (size_t i = 0; i < ix->n_overflow; i++) {
        uint32_t id = ov[i];
        flags[id] &= ~F_OVERFLOW;
        if ((flags[id] & (F_LIVE | F_TABLED)) == F_LIVE) {
            ov[m++] = id;
            flags[id] |= F_TABLED;
        }
    }
    ix->n_overflow = 0;
    if (m) {
        MergeJob job = {ix, ov, m, 0, 0};
        pthread_t th;
        int started = ix->ntables > 1 && nthreads > 1 && pthread_create(&th, NULL, merge_worker, &job) == 0;
        merge_worker(&job);
        if (started)
            pthread_join(th, NULL);
        if (job.failed) {
            /* Half-merged tables are useless: drop them, and searches scan every
             * live item (correct, slow) until a rebuild succeeds. */
            free_tables(ix);
            return -1;
        }
        ix->n_tabled += m;
    }
    buf_resize(&ix->overflow, 0);
    ix->n_merges++;
    return 0;
}

/* Add or replace one item (caller holds the write lock). */
static int add_item(Index *ix, uint32_t id, const uint8_t *fingerprint)
{
    if (ensure_limit(ix, id) < 0)
        return -1;
    uint8_t *flags = ix->flags.p, *slot = (uint8_t *)ix->fp.p + (size_t)id * FP_BYTES;
    uint8_t f = flags[id];
    int same = memcmp(slot, fingerprint, FP_BYTES) == 0;
    if (f & F_LIVE) {
        if (same)
            return 0;
    } else {
        ix->n_live++;
        if ((f & F_TABLED) && same) { /* re-added as it was: the tombstone comes back to life */
            flags[id] = f | F_LIVE;
            ix->n_tombstones--;
            return 0;
        }
        if (f & F_TABLED)
            ix->n_tombstones--;
    }
    if (f & F_TABLED) { /* the tables hold an older fingerprint of this id */
        f = (f & ~F_TABLED) | F_STALE;
        ix->n_stale++;
        ix->n_tabled--;
    }
    memcpy(slot, fingerprint, FP_BYTES);
    if (!(f & F_OVERFLOW)) {
        size_t need = (ix->n_overflow + 1) * sizeof(uint32_t);
        if (need > ix->overflow.bytes && buf_resize(&ix->overflow, need < 4096 ? 4096 : 2 * need) < 0)
            return -1;
        ((uint32_t *)ix->overflow.p)[ix->n_overflow++] = id;
        f |= F_OVERFLOW;
    }
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
    flags[id] &= ~F_LIVE;
    ix->n_live--;
    if (flags[id] & F_TABLED)
        ix->n_tombstones++;
    return 1;
}

/* ------------------------------------------------------------------ search */

typedef struct {
    int scan;
    int rho[MAX_TABLES]; /* -1: table not probed */
    double cost;
} Plan;

/* Radii with sum(rho_t + 1) >= threshold + 1 at the least estimated cost. Probing
 * one more radius in a table costs C(width, rho + 1) probes and their candidates;
 * these costs grow with rho, so taking the cheapest step each time is optimal. */
static void make_plan(const Index *ix, int threshold, int mode, Plan *plan)
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
            const Table *tb = &ix->tables[t];
            int r = plan->rho[t] + 1;
            if (r > MAX_RHO || r > tb->width)
                continue;
            double per_bucket = (double)tb->count / (double)((size_t)1 << tb->width);
            double c = binomial(tb->width, r) * (COST_PROBE + COST_CANDIDATE * per_bucket);
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
    uint32_t *cand;
    uint8_t *ct;
    size_t cand_cap, ct_cap;
    Hit *hits;
    size_t n_hits, hits_cap;
} Scratch;

static void scratch_free(Scratch *s)
{
    free(s->keys);
    free(s->lo);
    free(s->hi);
    free(s->rt);
    free(s->cand);
    free(s->ct);
    free(s->hits);
    memset(s, 0, sizeof *s);
}

static inline int push_hit(Scratch *s, uint32_t id, int d)
{
    if (grow((void **)&s->hits, &s->hits_cap, s->n_hits + 1, sizeof(Hit)) < 0)
        return -1;
    s->hits[s->n_hits].id = id;
    s->hits[s->n_hits].dist = (uint32_t)d;
    s->n_hits++;
    return 0;
}

HOT static int search_scan(const Index *ix, const uint8_t *q, int threshold, Scratch *s)
{
    const uint8_t *fp = ix->fp.p, *flags = ix->flags.p;
    for (size_t id = 0; id < ix->limit; id++) {
        int d = hamming(fp + id * FP_BYTES, q);
        if (d <= threshold && (flags[id] & F_LIVE))
            if (push_hit(s, (uint32_t)id, d) < 0)
                return -1;
    }
    return 0;
}

/* One query through the tables. Three passes, each first prefetching everything it
 * will touch so that hundreds of cache misses are in flight together instead of one
 * after the other: probe keys -> bucket ranges -> candidate ids -> distance checks. */
HOT static int search_tables(const Index *ix, const uint8_t *q, int threshold, const Plan *plan, Scratch *s)
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
        if (grow((void **)&s->lo, &s->lo_cap, nr + nk, sizeof(uint32_t)) < 0 ||
            grow((void **)&s->hi, &s->hi_cap, nr + nk, sizeof(uint32_t)) < 0 ||
            grow((void **)&s->rt, &s->rt_cap, nr + nk, 1) < 0)
            return -1;
        for (size_t i = 0; i < nk; i++) {
            uint32_t lo = off[s->keys[i]], hi = off[s->keys[i] + 1];
            if (hi > lo) {
                __builtin_prefetch(ids + lo);
                s->lo[nr] = lo;
                s->hi[nr] = hi;
                s->rt[nr] = (uint8_t)t;
                nr++;
            }
        }
    }
    size_t nc = 0;
    for (size_t r = 0; r < nr; r++) {
        const uint32_t *ids = ix->tables[s->rt[r]].ids.p;
        size_t len = s->hi[r] - s->lo[r];
        if (grow((void **)&s->cand, &s->cand_cap, nc + len, sizeof(uint32_t)) < 0 ||
            grow((void **)&s->ct, &s->ct_cap, nc + len, 1) < 0)
            return -1;
        for (size_t j = s->lo[r]; j < s->hi[r]; j++) {
            uint32_t id = ids[j];
            __builtin_prefetch(fp + (size_t)id * FP_BYTES);
            s->cand[nc] = id;
            s->ct[nc] = s->rt[r];
            nc++;
        }
    }
    for (size_t c = 0; c < nc; c++) {
        uint32_t id = s->cand[c];
        const uint8_t *x = fp + (size_t)id * FP_BYTES;
        int d = hamming(x, q);
        if (d > threshold || (flags[id] & (F_LIVE | F_TABLED)) != (F_LIVE | F_TABLED))
            continue;
        /* report from the first probed table whose radius reaches this item */
        int t = s->ct[c], first = 1;
        for (int u = 0; u < t && first; u++) {
            int rho = plan->rho[u];
            if (rho >= 0 && popcount32(chunk_of(x, ix->tables[u].start, ix->tables[u].width) ^ qk[u]) <= rho)
                first = 0;
        }
        if (first && push_hit(s, id, d) < 0)
            return -1;
    }
    /* items added since the last merge */
    const uint32_t *ov = ix->overflow.p;
    for (size_t i = 0; i < ix->n_overflow; i++) {
        uint32_t id = ov[i];
        int d = hamming(fp + (size_t)id * FP_BYTES, q);
        if (d <= threshold && (flags[id] & (F_LIVE | F_TABLED)) == F_LIVE)
            if (push_hit(s, id, d) < 0)
                return -1;
    }
    return 0;
}

static int search_one(const Index *ix, const uint8_t *q, int threshold, const Plan *plan, Scratch *s)
{
    return plan->scan ? search_scan(ix, q, threshold, s) : search_tables(ix, q, threshold, plan, s);
}

/* ------------------------------------------------------------------ batch */

typedef struct {
    uint32_t query, id, dist;
} Triple;

typedef struct {
    const Index *ix;
    const uint8_t *queries;
    size_t n;
    int threshold;
    const Plan *plan;
    size_t next; /* shared query cursor */
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
            s.n_hits = 0;
            if (search_one(job->ix, job->queries + qi * FP_BYTES, job->threshold, job->plan, &s) < 0 ||
                grow((void **)&w->out, &w->out_cap, w->n_out + s.n_hits, sizeof(Triple)) < 0) {
                __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
                goto done;
            }
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

static int check_threshold(Index *ix, PyObject *arg, int *out)
{
    if (arg == NULL || arg == Py_None) {
        *out = ix->threshold;
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
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "an id must be an integer between 0 and 4294967294");
        return -1;
    }
    if (v > MAX_ID) {
        PyErr_SetString(PyExc_ValueError, "an id must be an integer between 0 and 4294967294");
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

#define WRITE_LOCKED(ix, stmt)                                                                                      \
    do {                                                                                                            \
        Py_BEGIN_ALLOW_THREADS pthread_rwlock_wrlock(&(ix)->lock);                                                  \
        stmt;                                                                                                       \
        pthread_rwlock_unlock(&(ix)->lock);                                                                         \
        Py_END_ALLOW_THREADS                                                                                        \
    } while (0)

static int maybe_merge(Index *ix)
{
    if (!ix->deferred && ix->n_overflow > ix->overflow_max)
        return merge_overflow(ix, 2);
    return 0;
}

/* Tombstones cost a wasted candidate check each; compact when they are a quarter. */
static int maybe_compact(Index *ix)
{
    if (!ix->deferred && ix->built && ix->n_tombstones > 65536 && ix->n_tombstones > ix->n_tabled / 4)
        return rebuild(ix, 2);
    return 0;
}

static PyObject *Index_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"widths", "threshold", "overflow_max", NULL};
    PyObject *widths_obj = Py_None;
    int threshold = 31;
    Py_ssize_t overflow_max = 32768;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Oin", kwlist, &widths_obj, &threshold, &overflow_max))
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
    buf_free(&ix->fp);
    buf_free(&ix->flags);
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
    if (!PyArg_ParseTuple(args, "Oy*", &id_obj, &fpv))
        return NULL;
    if (fpv.len != FP_BYTES) {
        PyErr_Format(PyExc_ValueError, "a PDQ fingerprint is 32 bytes, not %zd", fpv.len);
        PyBuffer_Release(&fpv);
        return NULL;
    }
    if (get_id(id_obj, &id) < 0) {
        PyBuffer_Release(&fpv);
        return NULL;
    }
    int rc;
    WRITE_LOCKED(ix, rc = add_item(ix, id, fpv.buf); if (rc == 0) rc = maybe_merge(ix));
    PyBuffer_Release(&fpv);
    if (rc < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Index_add_many(Index *ix, PyObject *args)
{
    PyObject *ids_obj, *fps_obj;
    Py_buffer idv, fpv;
    if (!PyArg_ParseTuple(args, "OO", &ids_obj, &fps_obj))
        return NULL;
    if (get_buffer(ids_obj, &idv, 4, "ids (uint32)") < 0)
        return NULL;
    if (get_buffer(fps_obj, &fpv, FP_BYTES, "fingerprints") < 0) {
        PyBuffer_Release(&idv);
        return NULL;
    }
    size_t n = (size_t)idv.len / 4;
    if ((size_t)fpv.len / FP_BYTES != n) {
        PyErr_Format(PyExc_ValueError, "%zu ids but %zd fingerprints", n, fpv.len / FP_BYTES);
        PyBuffer_Release(&idv);
        PyBuffer_Release(&fpv);
        return NULL;
    }
    const uint32_t *ids = idv.buf;
    for (size_t i = 0; i < n; i++)
        if (ids[i] > MAX_ID) {
            PyErr_SetString(PyExc_ValueError, "id 4294967295 is reserved");
            PyBuffer_Release(&idv);
            PyBuffer_Release(&fpv);
            return NULL;
        }
    int rc = 0;
    WRITE_LOCKED(ix, {
        uint32_t top = 0;
        for (size_t i = 0; i < n; i++)
            if (ids[i] > top)
                top = ids[i];
        if (n)
            rc = ensure_limit(ix, top);
        for (size_t i = 0; i < n && rc == 0; i++) {
            rc = add_item(ix, ids[i], (const uint8_t *)fpv.buf + i * FP_BYTES);
        }
        if (rc == 0)
            rc = maybe_merge(ix);
    });
    PyBuffer_Release(&idv);
    PyBuffer_Release(&fpv);
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
    static char *kwlist[] = {"fingerprint", "threshold", "mode", NULL};
    Py_buffer qv;
    PyObject *thr = Py_None;
    int mode = 0, threshold;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*|Oi", kwlist, &qv, &thr, &mode))
        return NULL;
    if (qv.len != FP_BYTES) {
        PyErr_Format(PyExc_ValueError, "a PDQ fingerprint is 32 bytes, not %zd", qv.len);
        PyBuffer_Release(&qv);
        return NULL;
    }
    if (check_threshold(ix, thr, &threshold) < 0) {
        PyBuffer_Release(&qv);
        return NULL;
    }
    Scratch s;
    memset(&s, 0, sizeof s);
    int rc;
    Py_BEGIN_ALLOW_THREADS pthread_rwlock_rdlock(&ix->lock);
    Plan plan;
    make_plan(ix, threshold, mode, &plan);
    rc = search_one(ix, qv.buf, threshold, &plan, &s);
    pthread_rwlock_unlock(&ix->lock);
    Py_END_ALLOW_THREADS PyBuffer_Release(&qv);
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
    scratch_free(&s);
    return list;
}

static PyObject *Index_search_many(Index *ix, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fingerprints", "threshold", "threads", "mode", NULL};
    PyObject *fps_obj, *thr = Py_None;
    int threads = 2, mode = 0, threshold;
    Py_buffer qv;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|Oii", kwlist, &fps_obj, &thr, &threads, &mode))
        return NULL;
    if (check_threshold(ix, thr, &threshold) < 0)
        return NULL;
    if (get_buffer(fps_obj, &qv, FP_BYTES, "fingerprints") < 0)
        return NULL;
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    size_t n = (size_t)qv.len / FP_BYTES;
    Plan plan;
    BatchJob job = {ix, qv.buf, n, threshold, &plan, 0, 0};
    BatchWorker workers[64];
    memset(workers, 0, sizeof workers);
    Py_BEGIN_ALLOW_THREADS pthread_rwlock_rdlock(&ix->lock);
    make_plan(ix, threshold, mode, &plan);
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
    PyObject *result = NULL;
    if (job.failed)
        PyErr_NoMemory();
    else {
        size_t total = 0;
        for (int i = 0; i < 64; i++)
            total += workers[i].n_out;
        result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(total * sizeof(Triple)));
        if (result) {
            char *dst = PyBytes_AS_STRING(result);
            for (int i = 0; i < 64; i++) {
                memcpy(dst, workers[i].out, workers[i].n_out * sizeof(Triple));
                dst += workers[i].n_out * sizeof(Triple);
            }
        }
    }
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

static PyObject *Index_set_deferred(Index *ix, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    WRITE_LOCKED(ix, ix->deferred = on);
    Py_RETURN_NONE;
}

static PyObject *Index_get(Index *ix, PyObject *arg)
{
    uint32_t id;
    if (get_id(arg, &id) < 0)
        return NULL;
    PyObject *r = NULL;
    pthread_rwlock_rdlock(&ix->lock);
    if (id < ix->limit && (((uint8_t *)ix->flags.p)[id] & F_LIVE))
        r = PyBytes_FromStringAndSize((const char *)ix->fp.p + (size_t)id * FP_BYTES, FP_BYTES);
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
    pthread_rwlock_rdlock(&ix->lock);
    make_plan(ix, threshold, mode, &plan);
    pthread_rwlock_unlock(&ix->lock);
    PyObject *radii = PyList_New(ix->ntables);
    for (int t = 0; radii && t < ix->ntables; t++)
        PyList_SET_ITEM(radii, t, PyLong_FromLong(plan.rho[t]));
    return Py_BuildValue("{s:O,s:N,s:d}", "scan", plan.scan ? Py_True : Py_False, "radii", radii, "cost_ns",
                         plan.cost);
}

static PyObject *Index_stats(Index *ix, PyObject *Py_UNUSED(ignored))
{
    pthread_rwlock_rdlock(&ix->lock);
    size_t table_bytes = 0;
    PyObject *widths = PyList_New(ix->ntables);
    for (int t = 0; t < ix->ntables; t++) {
        table_bytes += ix->tables[t].off.bytes + ix->tables[t].ids.bytes;
        if (widths)
            PyList_SET_ITEM(widths, t, PyLong_FromLong(ix->tables[t].width));
    }
    PyObject *r = Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:n,s:n,s:N,s:n,s:n,s:n,s:i,s:i,s:n,s:n}", "live", (Py_ssize_t)ix->n_live, "tabled",
        (Py_ssize_t)ix->n_tabled, "overflow", (Py_ssize_t)ix->n_overflow, "tombstones", (Py_ssize_t)ix->n_tombstones,
        "stale", (Py_ssize_t)ix->n_stale, "id_limit", (Py_ssize_t)ix->limit, "widths", widths, "table_bytes",
        (Py_ssize_t)table_bytes, "fingerprint_bytes", (Py_ssize_t)(ix->fp.bytes + ix->flags.bytes), "overflow_max",
        (Py_ssize_t)ix->overflow_max, "built", ix->built, "threshold", ix->threshold, "merges", (Py_ssize_t)ix->n_merges, "rebuilds",
        (Py_ssize_t)ix->n_rebuilds);
    pthread_rwlock_unlock(&ix->lock);
    return r;
}

static Py_ssize_t Index_len(Index *ix) { return (Py_ssize_t)ix->n_live; }

static PyMethodDef Index_methods[] = {
    {"add", (PyCFunction)Index_add, METH_VARARGS, "add(id, fingerprint): add or replace one item."},
    {"add_many", (PyCFunction)Index_add_many, METH_VARARGS,
     "add_many(ids, fingerprints): uint32 ids and n*32 bytes of fingerprints (buffers)."},
    {"remove", (PyCFunction)Index_remove, METH_O, "remove(id) -> bool: takes effect for every later search."},
    {"remove_many", (PyCFunction)Index_remove_many, METH_O, "remove_many(ids) -> number removed (uint32 buffer)."},
    {"search", (PyCFunction)(void (*)(void))Index_search, METH_VARARGS | METH_KEYWORDS,
     "search(fingerprint, threshold=None, mode=0) -> [(id, distance)]; mode 0 auto, 1 tables, 2 scan."},
    {"search_many", (PyCFunction)(void (*)(void))Index_search_many, METH_VARARGS | METH_KEYWORDS,
     "search_many(fingerprints, threshold=None, threads=2, mode=0) -> bytes of uint32 (query, id, distance)."},
    {"rebuild", (PyCFunction)Index_rebuild, METH_NOARGS, "Rebuild the tables from the live items."},
    {"set_deferred", (PyCFunction)Index_set_deferred, METH_O, "While true, adds are not merged into the tables."},
    {"get", (PyCFunction)Index_get, METH_O, "get(id) -> fingerprint bytes or None."},
    {"plan", (PyCFunction)Index_plan, METH_VARARGS, "plan(threshold, mode=0) -> how a search would run."},
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
    return m;
}
