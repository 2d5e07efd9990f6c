/* Topic validation and matching (MQTT 3.1.1 section 4.7) and the subscription
 * tree: a trie with one node per level. Each node holds its subscribers and,
 * on nodes reached by an exact topic name, a retained value. Every walk is
 * iterative (parent pointers, no recursion, no allocation while matching). */
#include "broker/topic.h"

#include <stdlib.h>
#include <string.h>

#define TOPIC_MAX 65535u
/* Up to this many literal children or subscribers a node scans linearly;
 * beyond it, an open-addressing index over the dense array is kept. */
#define SMALL_MAX 8u

/* Index from a hash to positions in a dense array. slot[i] holds pos + 1, 0 is
 * empty; linear probing, deletion by backward shift. No slot array means the
 * owner scans its array linearly (the index is only an accelerator, so a
 * failed allocation drops it instead of failing the operation). */
struct pidx {
    uint32_t *slot;
    uint32_t mask;
};

struct sent {
    void *sub;
    uint8_t qos;
};

struct node {
    struct node *parent;
    struct node *plus;  /* the '+' child */
    struct node *multi; /* the '#' child */
    struct node **kids; /* literal children, dense */
    struct pidx kidx;
    uint32_t nkids, kcap;
    struct sent *subs; /* dense */
    struct pidx sidx;
    uint32_t nsubs, scap;
    void *retained;
    uint32_t idx;   /* position in parent->kids (literal children only) */
    uint32_t lhash; /* hash of level */
    size_t llen;
    char level[];
};

struct topic_tree {
    struct node *root;
    size_t nretained;
    size_t nnodes; /* besides the root */
    uint64_t seed;
};

/* ---- validation and pure matching ---- */

size_t topic_levels(const char *t, size_t len)
{
    size_t n = 1;
    for (const char *p = t, *end = t + len; (p = memchr(p, '/', (size_t)(end - p))); p++) n++;
    return n;
}

size_t topic_filter_cost(size_t len, size_t levels)
{
    return 2 * len + levels * (sizeof(struct node) + sizeof(struct sent) + 16);
}

bool topic_name_valid(const char *t, size_t len)
{
    if (!t || len == 0 || len > TOPIC_MAX) return false;
    for (size_t i = 0; i < len; i++)
        if (t[i] == '+' || t[i] == '#' || t[i] == '\0') return false;
    return true;
}

bool topic_filter_valid(const char *f, size_t len)
{
    if (!f || len == 0 || len > TOPIC_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char c = f[i];
        if (c == '\0') return false;
        if (c != '+' && c != '#') continue;
        bool alone = (i == 0 || f[i - 1] == '/') && (i + 1 == len || f[i + 1] == '/');
        if (!alone) return false;
        if (c == '#' && i + 1 != len) return false;
    }
    return true;
}

/* End of the level starting at off: the next '/' or len. */
static size_t level_end(const char *s, size_t len, size_t off)
{
    const char *p = off < len ? memchr(s + off, '/', len - off) : NULL;
    return p ? (size_t)(p - s) : len;
}

/* Start of the level before the one starting at off (off >= 1; len + 1 stands
 * for "past the last level"). */
static size_t level_start_before(const char *s, size_t off)
{
    size_t i = off - 1;
    while (i > 0 && s[i - 1] != '/') i--;
    return i;
}

static bool level_is(const char *s, size_t off, size_t end, char c)
{
    return end - off == 1 && s[off] == c;
}

bool topic_matches(const char *filter, size_t flen, const char *name, size_t nlen)
{
    if (!topic_filter_valid(filter, flen) || !topic_name_valid(name, nlen)) return false;
    if (name[0] == '$' && (filter[0] == '+' || filter[0] == '#')) return false;
    size_t fi = 0, ni = 0; /* level starts; ni == nlen + 1 once the name is used up */
    for (;;) {
        size_t fe = level_end(filter, flen, fi);
        if (level_is(filter, fi, fe, '#')) return true; /* also matches the parent */
        if (ni > nlen) return false;
        size_t ne = level_end(name, nlen, ni);
        if (!level_is(filter, fi, fe, '+') &&
            (fe - fi != ne - ni || memcmp(filter + fi, name + ni, fe - fi) != 0))
            return false;
        fi = fe + 1;
        ni = ne + 1;
        if (fi > flen) return ni > nlen;
    }
}

/* ---- hashing and the position index ---- */

static uint32_t hash_bytes(uint64_t seed, const char *s, size_t len)
{
    uint64_t h = seed ^ 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return (uint32_t)(h >> 32);
}

static uint32_t hash_ptr(uint64_t seed, const void *p)
{
    uint64_t h = ((uint64_t)(uintptr_t)p ^ seed) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(h >> 32);
}

typedef uint32_t (*hash_at_fn)(const struct topic_tree *t, const struct node *n, uint32_t pos);

static uint32_t kid_hash_at(const struct topic_tree *t, const struct node *n, uint32_t pos)
{
    (void)t;
    return n->kids[pos]->lhash;
}

static uint32_t sub_hash_at(const struct topic_tree *t, const struct node *n, uint32_t pos)
{
    return hash_ptr(t->seed, n->subs[pos].sub);
}

static void pidx_drop(struct pidx *x)
{
    free(x->slot);
    x->slot = NULL;
    x->mask = 0;
}

static void pidx_insert(struct pidx *x, uint32_t h, uint32_t pos)
{
    uint32_t i = h & x->mask;
    while (x->slot[i]) i = (i + 1) & x->mask;
    x->slot[i] = pos + 1;
}

/* The slot holding pos, which must be present. */
static uint32_t pidx_slot_of(const struct pidx *x, uint32_t h, uint32_t pos)
{
    uint32_t i = h & x->mask;
    while (x->slot[i] != pos + 1) i = (i + 1) & x->mask;
    return i;
}

/* (Re)builds the index for count items, at most half full. On failure the
 * index is dropped and the owner falls back to linear scans. */
static void pidx_build(const struct topic_tree *t, const struct node *n, struct pidx *x,
                       uint32_t count, hash_at_fn hash_at)
{
    uint32_t cap = 16;
    while (cap / 2 < count && cap < (1u << 31)) cap <<= 1;
    uint32_t *slot = calloc(cap, sizeof *slot);
    pidx_drop(x);
    if (!slot) return;
    x->slot = slot;
    x->mask = cap - 1;
    for (uint32_t i = 0; i < count; i++) pidx_insert(x, hash_at(t, n, i), i);
}

/* Called after item count - 1 was appended to the owner's array. */
static void pidx_added(const struct topic_tree *t, const struct node *n, struct pidx *x,
                       uint32_t count, uint32_t h, hash_at_fn hash_at)
{
    if (!x->slot && count <= SMALL_MAX) return;
    if (!x->slot || count > (x->mask + 1) / 2)
        pidx_build(t, n, x, count, hash_at);
    else
        pidx_insert(x, h, count - 1);
}

/* Removes pos (hash h) from the index. Entries after it in its probe run
 * that may move back are shifted so lookups never stop early. */
static void pidx_delete(const struct topic_tree *t, const struct node *n, struct pidx *x,
                        uint32_t h, uint32_t pos, hash_at_fn hash_at)
{
    uint32_t i = pidx_slot_of(x, h, pos), j = i;
    for (;;) {
        x->slot[i] = 0;
        for (;;) {
            j = (j + 1) & x->mask;
            if (!x->slot[j]) return;
            uint32_t k = hash_at(t, n, x->slot[j] - 1) & x->mask;
            bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
            if (!stays) break;
        }
        x->slot[i] = x->slot[j];
        i = j;
    }
}

/* Swap-removal from a dense array: the last item moves into pos. */
static void pidx_moved(struct pidx *x, uint32_t h, uint32_t from, uint32_t to)
{
    if (x->slot) x->slot[pidx_slot_of(x, h, from)] = to + 1;
}

/* ---- nodes ---- */

static struct node *node_new(struct topic_tree *t, struct node *parent, const char *s, size_t len)
{
    struct node *n = calloc(1, sizeof *n + len + 1);
    if (!n) return NULL;
    if (parent) t->nnodes++;
    n->parent = parent;
    n->llen = len;
    if (len) memcpy(n->level, s, len);
    n->lhash = hash_bytes(t->seed, s, len);
    return n;
}

static void node_free(struct topic_tree *t, struct node *n)
{
    if (n->parent) t->nnodes--;
    pidx_drop(&n->kidx);
    pidx_drop(&n->sidx);
    free(n->kids);
    free(n->subs);
    free(n);
}

static bool node_empty(const struct node *n)
{
    return !n->nkids && !n->plus && !n->multi && !n->nsubs && !n->retained;
}

static struct node *kid_find(const struct topic_tree *t, const struct node *n, const char *s,
                             size_t len)
{
    if (n->kidx.slot) {
        uint32_t h = hash_bytes(t->seed, s, len);
        for (uint32_t i = h & n->kidx.mask; n->kidx.slot[i]; i = (i + 1) & n->kidx.mask) {
            struct node *c = n->kids[n->kidx.slot[i] - 1];
            if (c->lhash == h && c->llen == len && memcmp(c->level, s, len) == 0) return c;
        }
        return NULL;
    }
    for (uint32_t i = 0; i < n->nkids; i++) {
        struct node *c = n->kids[i];
        if (c->llen == len && memcmp(c->level, s, len) == 0) return c;
    }
    return NULL;
}

static int kid_add(struct topic_tree *t, struct node *n, const char *s, size_t len,
                   struct node **out)
{
    if (n->nkids == n->kcap) {
        uint32_t cap = n->kcap ? n->kcap * 2 : 4;
        struct node **k = realloc(n->kids, cap * sizeof *k);
        if (!k) return ERR_NOMEM;
        n->kids = k;
        n->kcap = cap;
    }
    struct node *c = node_new(t, n, s, len);
    if (!c) return ERR_NOMEM;
    c->idx = n->nkids;
    n->kids[n->nkids++] = c;
    pidx_added(t, n, &n->kidx, n->nkids, c->lhash, kid_hash_at);
    *out = c;
    return 0;
}

static void kid_remove(const struct topic_tree *t, struct node *p, struct node *c)
{
    uint32_t pos = c->idx, last = p->nkids - 1;
    if (p->kidx.slot) pidx_delete(t, p, &p->kidx, c->lhash, pos, kid_hash_at);
    if (pos != last) {
        struct node *m = p->kids[last];
        pidx_moved(&p->kidx, m->lhash, last, pos);
        p->kids[pos] = m;
        m->idx = pos;
    }
    if (--p->nkids == 0) {
        pidx_drop(&p->kidx);
        free(p->kids);
        p->kids = NULL;
        p->kcap = 0;
    }
}

/* Child of n for one level ('+' and '#' have their own slots). With create,
 * a missing child is added; without, *out is NULL when there is none. */
static int node_child(struct topic_tree *t, struct node *n, const char *s, size_t len, bool create,
                      struct node **out)
{
    struct node **special = NULL;
    if (len == 1 && s[0] == '+') special = &n->plus;
    if (len == 1 && s[0] == '#') special = &n->multi;
    if (special) {
        if (!*special && create) *special = node_new(t, n, s, len);
        if (!*special && create) return ERR_NOMEM;
        *out = *special;
        return 0;
    }
    *out = kid_find(t, n, s, len);
    if (*out || !create) return 0;
    return kid_add(t, n, s, len, out);
}

/* Removes n and its ancestors while they hold nothing. */
static void prune(struct topic_tree *t, struct node *n)
{
    while (n != t->root && node_empty(n)) {
        struct node *p = n->parent;
        if (p->plus == n)
            p->plus = NULL;
        else if (p->multi == n)
            p->multi = NULL;
        else
            kid_remove(t, p, n);
        node_free(t, n);
        n = p;
    }
}

/* The node for a filter or name; *out is NULL when absent and not created.
 * On failure the nodes created so far are pruned. */
static int tree_walk(struct topic_tree *t, const char *s, size_t len, bool create,
                     struct node **out)
{
    struct node *n = t->root;
    size_t off = 0;
    *out = NULL;
    for (;;) {
        size_t e = level_end(s, len, off);
        struct node *c;
        int rc = node_child(t, n, s + off, e - off, create, &c);
        if (rc < 0) {
            prune(t, n);
            return rc;
        }
        if (!c) return 0;
        n = c;
        if (e == len) break;
        off = e + 1;
    }
    *out = n;
    return 0;
}

/* ---- subscribers ---- */

static int sub_find(const struct topic_tree *t, const struct node *n, const void *sub)
{
    if (n->sidx.slot) {
        uint32_t h = hash_ptr(t->seed, sub);
        for (uint32_t i = h & n->sidx.mask; n->sidx.slot[i]; i = (i + 1) & n->sidx.mask)
            if (n->subs[n->sidx.slot[i] - 1].sub == sub) return (int)(n->sidx.slot[i] - 1);
        return -1;
    }
    for (uint32_t i = 0; i < n->nsubs; i++)
        if (n->subs[i].sub == sub) return (int)i;
    return -1;
}

MUST_USE static int sub_add(const struct topic_tree *t, struct node *n, void *sub, uint8_t qos)
{
    if (n->nsubs == n->scap) {
        uint32_t cap = n->scap ? n->scap * 2 : 2;
        struct sent *s = realloc(n->subs, cap * sizeof *s);
        if (!s) return ERR_NOMEM;
        n->subs = s;
        n->scap = cap;
    }
    n->subs[n->nsubs].sub = sub;
    n->subs[n->nsubs].qos = qos;
    n->nsubs++;
    pidx_added(t, n, &n->sidx, n->nsubs, hash_ptr(t->seed, sub), sub_hash_at);
    return 0;
}

static void sub_remove(const struct topic_tree *t, struct node *n, uint32_t pos)
{
    uint32_t last = n->nsubs - 1;
    if (n->sidx.slot)
        pidx_delete(t, n, &n->sidx, hash_ptr(t->seed, n->subs[pos].sub), pos, sub_hash_at);
    if (pos != last) {
        pidx_moved(&n->sidx, hash_ptr(t->seed, n->subs[last].sub), last, pos);
        n->subs[pos] = n->subs[last];
    }
    if (--n->nsubs == 0) {
        pidx_drop(&n->sidx);
        free(n->subs);
        n->subs = NULL;
        n->scap = 0;
    }
}

static void report_subs(const struct node *n, topic_sub_fn fn, void *arg)
{
    for (uint32_t i = 0; i < n->nsubs; i++) fn(n->subs[i].sub, n->subs[i].qos, arg);
}

/* ---- the tree ---- */

struct topic_tree *topic_tree_new(void)
{
    struct topic_tree *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    /* A per-tree seed from the allocation address: levels chosen by clients
     * should not collide the same way in every broker run. */
    t->seed = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ull;
    t->seed ^= t->seed >> 31;
    t->root = node_new(t, NULL, "", 0);
    if (!t->root) {
        free(t);
        return NULL;
    }
    return t;
}

void topic_tree_free(struct topic_tree *t)
{
    if (!t) return;
    struct node *n = t->root;
    while (n) {
        struct node *c = NULL;
        if (n->plus) {
            c = n->plus;
            n->plus = NULL;
        } else if (n->multi) {
            c = n->multi;
            n->multi = NULL;
        } else if (n->nkids) {
            c = n->kids[--n->nkids];
        }
        if (c) {
            n = c;
            continue;
        }
        struct node *p = n->parent;
        node_free(t, n);
        n = p;
    }
    free(t);
}

int topic_subscribe(struct topic_tree *t, const char *filter, size_t len, void *sub, uint8_t qos)
{
    ENSURE(t && topic_filter_valid(filter, len), ERR_INVALID);
    struct node *n;
    GUARD(tree_walk(t, filter, len, true, &n));
    int pos = sub_find(t, n, sub);
    if (pos >= 0) {
        n->subs[pos].qos = qos;
        return 0;
    }
    int rc = sub_add(t, n, sub, qos);
    if (rc < 0) {
        prune(t, n);
        return rc;
    }
    return 1;
}

int topic_unsubscribe(struct topic_tree *t, const char *filter, size_t len, void *sub)
{
    if (!t || !topic_filter_valid(filter, len)) return 0;
    struct node *n;
    if (tree_walk(t, filter, len, false, &n) < 0 || !n) return 0;
    int pos = sub_find(t, n, sub);
    if (pos < 0) return 0;
    sub_remove(t, n, (uint32_t)pos);
    prune(t, n);
    return 1;
}

/* Depth-first over the nodes whose filters can match name: at each node the
 * '#' child matches, then the exact child and the '+' child are visited.
 * off is the start of the name level n's children match (len + 1 once the
 * name is used up); going up recomputes it from the name. */
void topic_match(struct topic_tree *t, const char *name, size_t len, topic_sub_fn fn, void *arg)
{
    if (!t || !fn || !topic_name_valid(name, len)) return;
    bool dollar = name[0] == '$';
    struct node *n = t->root;
    size_t off = 0;
    bool down = true;
    for (;;) {
        if (down) {
            bool wild = !(n == t->root && dollar);
            if (wild && n->multi) report_subs(n->multi, fn, arg);
            if (off > len) {
                report_subs(n, fn, arg);
                down = false;
                continue;
            }
            size_t e = level_end(name, len, off);
            struct node *c = kid_find(t, n, name + off, e - off);
            if (!c && wild) c = n->plus;
            if (c) {
                n = c;
                off = e + 1;
            } else {
                down = false;
            }
            continue;
        }
        if (n == t->root) return;
        struct node *p = n->parent;
        size_t child_off = off;
        off = level_start_before(name, off);
        if (n != p->plus && p->plus && !(p == t->root && dollar)) {
            n = p->plus;
            off = child_off;
            down = true;
            continue;
        }
        n = p;
    }
}

void *topic_retain_set(struct topic_tree *t, const char *name, size_t len, void *value)
{
    if (!t || !topic_name_valid(name, len)) return value;
    struct node *n;
    if (tree_walk(t, name, len, value != NULL, &n) < 0) return value;
    if (!n) return NULL;
    void *old = n->retained;
    n->retained = value;
    if (old && !value) t->nretained--;
    if (!old && value) t->nretained++;
    if (!value) prune(t, n);
    return old;
}

/* The first literal child of p at or after index i; with skip_dollar, children
 * whose level starts with '$' are passed over (wildcards at the first level). */
static struct node *next_kid(const struct node *p, uint32_t i, bool skip_dollar)
{
    for (; i < p->nkids; i++) {
        struct node *c = p->kids[i];
        if (skip_dollar && c->llen && c->level[0] == '$') continue;
        return c;
    }
    return NULL;
}

/* Every retained value at or under top (a '#' filter level). Only literal
 * children can lead to retained values: names hold no wildcards. */
static void report_subtree(const struct node *top, bool skip_dollar, topic_retained_fn fn,
                           void *arg)
{
    if (top->retained) fn(top->retained, arg);
    const struct node *c = next_kid(top, 0, skip_dollar);
    while (c) {
        if (c->retained) fn(c->retained, arg);
        if (c->nkids) {
            c = c->kids[0];
            continue;
        }
        for (;;) {
            const struct node *p = c->parent;
            const struct node *s = next_kid(p, c->idx + 1, skip_dollar && p == top);
            if (s) {
                c = s;
                break;
            }
            if (p == top) return;
            c = p;
        }
    }
}

/* Walks the filter through the literal part of the tree: exact levels look
 * up one child, '+' visits every child in turn, '#' takes a whole subtree.
 * off is the start of the filter level n's children match. */
void topic_retain_match(struct topic_tree *t, const char *filter, size_t len, topic_retained_fn fn,
                        void *arg)
{
    if (!t || !fn || !topic_filter_valid(filter, len)) return;
    struct node *n = t->root;
    size_t off = 0;
    bool down = true;
    for (;;) {
        if (down) {
            if (off > len) {
                if (n->retained) fn(n->retained, arg);
                down = false;
                continue;
            }
            size_t e = level_end(filter, len, off);
            struct node *c;
            if (level_is(filter, off, e, '#')) {
                report_subtree(n, n == t->root, fn, arg);
                c = NULL;
            } else if (level_is(filter, off, e, '+')) {
                c = next_kid(n, 0, n == t->root);
            } else {
                c = kid_find(t, n, filter + off, e - off);
            }
            if (c) {
                n = c;
                off = e + 1;
            } else {
                down = false;
            }
            continue;
        }
        if (n == t->root) return;
        struct node *p = n->parent;
        size_t child_off = off;
        off = level_start_before(filter, off);
        if (level_is(filter, off, child_off - 1, '+')) {
            struct node *s = next_kid(p, n->idx + 1, p == t->root);
            if (s) {
                n = s;
                off = child_off;
                down = true;
                continue;
            }
        }
        n = p;
    }
}

size_t topic_node_count(const struct topic_tree *t)
{
    return t ? t->nnodes : 0;
}

size_t topic_retain_count(const struct topic_tree *t)
{
    return t ? t->nretained : 0;
}

static struct node *last_leaf(struct node *n)
{
    while (n->nkids) n = n->kids[n->nkids - 1];
    return n;
}

/* Post-order over the literal children, last child first: removing a child
 * swaps the last one into its place, and that one has been visited already. */
void topic_retain_clear(struct topic_tree *t, topic_retained_fn fn, void *arg)
{
    if (!t) return;
    struct node *n = last_leaf(t->root);
    for (;;) {
        if (n->retained) {
            if (fn) fn(n->retained, arg);
            n->retained = NULL;
            t->nretained--;
        }
        if (n == t->root) return;
        struct node *p = n->parent;
        uint32_t i = n->idx;
        if (node_empty(n)) {
            kid_remove(t, p, n);
            node_free(t, n);
        }
        n = i > 0 ? last_leaf(p->kids[i - 1]) : p;
    }
}
