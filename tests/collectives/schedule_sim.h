// An in-memory executor for schedules: checks that every rank's schedule fits the others'
// (pairing, bounds, hazards, one-sided safety) and runs them on real buffers. It is what the
// real executor must do, minus the transport, so the schedule tests need no network.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "rdmacoll/collectives/datatype.h"
#include "schedule.h"

namespace rdmacoll::collectives::schedules {

struct Validation {
  std::string error;  // the first problem found, "" if none
  // known[r][q]: how many of q's steps rank r knows q has started, at the end (through the
  // chain of transfers). A barrier needs known[r][q] >= 1 everywhere.
  std::vector<std::vector<std::size_t>> known;
};

// ranks[r] is rank r's schedule. Checks, step by step:
//  - the schedules agree on nranks, step count, count and scratch, and ranks[r].rank == r;
//  - every place lies inside its region ([0, count) user, [0, scratch) scratch);
//  - the sends from a to b in a step equal the receives by b from a, in order;
//  - transfers carry data (count > 0) unless empty ones are allowed (the barrier);
//  - within a step, where a receive lands overlaps nothing else the rank touches in the
//    step, and no reduce target overlaps a send's source (reduce targets may be shared);
//    a local op's source and target do not overlap;
//  - one-sided safety: whatever a transfer of step s writes into the receiver was last
//    touched by the receiver in a step the sender knew complete when it started step s,
//    or only sent from in a step whose transfers the sender knew had arrived.
Validation validate(std::span<const Schedule> ranks, bool allow_empty_transfers);

// Runs valid schedules step by step with reduction op sum on `type`: user[r] is rank r's
// buffer (at least ranks[r].count elements, as bytes), updated in place. Scratch starts
// filled with a junk pattern, so reading scratch nobody wrote shows up in the results.
void run(std::span<const Schedule> ranks, DataType type, std::vector<std::vector<std::byte>>& user);

}  // namespace rdmacoll::collectives::schedules
