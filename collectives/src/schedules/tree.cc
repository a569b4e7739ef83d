// Double binary tree allreduce, as in NCCL: two binary trees over all ranks, each reducing
// half of the data to its root and broadcasting it back down. In one binary tree the leaves
// (half the ranks) only send once and receive once while the inner ranks carry the load;
// the second tree makes the first one's leaves its inner ranks, so every rank does about the
// same work. Depth is about log2(n): few steps for small messages; pipelined (Spec::pieces)
// the data streams up and down both trees at once.
#include <algorithm>
#include <vector>

#include "schedules/common.h"

namespace rdmacoll::collectives::schedules {
namespace {

using detail::at;

// The first tree is in-order over the ranks, leaves on the odd ranks. Rank 0 is the root
// with one child, the largest power of two below n. A rank r whose lowest set bit is b has
// the parent r + b if bit 2b of r is clear and r + b < n, else r - b; and the children
// r - b/2 and r + b/2 (or the first of r + b/4, r + b/8, ... below n). The second tree is
// the first mirrored (r -> n-1-r) when n is even, shifted by one (r -> r+1) when n is odd:
/*
     n = 8, mirrored:                       n = 5, shifted:
     0------4          7------3             0---4           1---0
           / \               / \               /               /
          2   6             1   5             2               3
         / \ / \           / \ / \           / \             / \
        1  3 5  7         0  2 4  6         1   3           2   4
*/
int first_tree_parent(int n, int r) {
  if (r == 0) return -1;
  const int b = r & -r;
  const int up = (r ^ b) | (b << 1);
  return up < n ? up : r ^ b;
}

int parent_in(int which, int n, int r) {
  if (which == 0) return first_tree_parent(n, r);
  if (n % 2 == 0) {
    const int p = first_tree_parent(n, n - 1 - r);
    return p < 0 ? -1 : n - 1 - p;
  }
  const int p = first_tree_parent(n, detail::wrap(r - 1, n));
  return p < 0 ? -1 : detail::wrap(p + 1, n);
}

struct Tree {
  std::vector<int> parent;                 // -1 at the root
  std::vector<std::vector<int>> children;  // increasing rank order
  std::vector<std::size_t> depth;          // root: 0
  std::vector<std::size_t> height;         // leaves: 0
  std::size_t top = 0;                     // the root's height
  std::size_t max_depth = 0;
};

Tree make_tree(int which, int n) {
  const auto size = static_cast<std::size_t>(n);
  Tree t;
  t.parent.resize(size);
  t.children.resize(size);
  t.depth.assign(size, 0);
  t.height.assign(size, 0);
  for (int r = 0; r < n; ++r) at(t.parent, r) = parent_in(which, n, r);
  std::vector<int> deepest_first;
  for (int r = 0; r < n; ++r) {
    if (at(t.parent, r) >= 0) at(t.children, at(t.parent, r)).push_back(r);
    for (int up = at(t.parent, r); up >= 0; up = at(t.parent, up)) ++at(t.depth, r);
    deepest_first.push_back(r);
  }
  std::sort(deepest_first.begin(), deepest_first.end(),
            [&](int a, int b) { return at(t.depth, a) > at(t.depth, b); });
  for (int r : deepest_first) {
    const int p = at(t.parent, r);
    if (p >= 0)
      at(t.height, p) = std::max(at(t.height, p), at(t.height, r) + 1);
    else
      t.top = at(t.height, r);
  }
  t.max_depth = *std::max_element(t.depth.begin(), t.depth.end());
  return t;
}

// Index of `child` among its parent's children: its staging slot at the parent.
std::size_t slot(const Tree& t, int child) {
  const std::vector<int>& siblings = at(t.children, at(t.parent, child));
  return static_cast<std::size_t>(std::find(siblings.begin(), siblings.end(), child) -
                                  siblings.begin());
}

}  // namespace

// In one tree, with H the root's height: a rank sends its partial sum to its parent in step
// height(rank), after its children (all lower) have sent theirs; the root sends the result
// down in step H and a rank at depth d passes it on in step H + d. Child k's partial sum
// lands in the parent's scratch at k * count + the half's offset: no slot is written twice,
// and the two trees' halves never meet.
Schedule double_binary_tree_allreduce(int rank, int nranks, std::size_t count) {
  detail::check_team("double_binary_tree_allreduce", rank, nranks);
  const Tree trees[2] = {make_tree(0, nranks), make_tree(1, nranks)};
  std::size_t steps = 0;
  if (count > 0)
    for (const Tree& t : trees) steps = std::max(steps, t.top + t.max_depth);
  Schedule s = detail::make_schedule(
      rank, nranks, count, scratch_elements(Algorithm::double_binary_tree_allreduce, nranks, count),
      steps);
  if (steps == 0) return s;

  const std::vector<Block> halves = even_blocks(count, 2);
  for (std::size_t which = 0; which < 2; ++which) {
    const Tree& t = trees[which];
    const Block half = halves[which];
    auto staging = [&](int child) { return slot(t, child) * count + half.offset; };
    for (int child : at(t.children, rank)) {
      detail::add(s, at(t.height, child), detail::reduce_block(child, rank, half, staging(child)));
      detail::add(s, t.top + at(t.depth, rank), detail::copy_block(rank, child, half));
    }
    if (const int parent = at(t.parent, rank); parent >= 0) {
      detail::add(s, at(t.height, rank), detail::reduce_block(rank, parent, half, staging(rank)));
      detail::add(s, t.top + at(t.depth, rank) - 1, detail::copy_block(parent, rank, half));
    }
  }
  return s;
}

}  // namespace rdmacoll::collectives::schedules
