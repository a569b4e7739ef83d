// The cost model's parameters: parsed from RDMACOLL_COST_MODEL, or measured when a
// communicator is created.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "exec/comm_impl.h"
#include "rdmacoll/collectives/reduce.h"
#include "rdmacoll/error.h"
#include "rdmacoll/log.h"
#include "schedules/common.h"

namespace rdmacoll::collectives {

std::optional<CostModel> parse_cost_model(std::string_view text) {
  if (text.empty() || text == "measure") return std::nullopt;
  auto bad = [&](const std::string& why) {
    return ConfigError("RDMACOLL_COST_MODEL: '" + std::string(text) + "' " + why +
                       "; expected 'measure' or ALPHA_US,LINK_GBPS,REDUCE_GBPS (e.g. 5,12.5,8)");
  };
  double v[3];
  size_t at = 0;
  for (int i = 0; i < 3; ++i) {
    const size_t end = i < 2 ? text.find(',', at) : text.size();
    if (end == std::string_view::npos) throw bad("has fewer than three fields");
    const std::string field(text.substr(at, end - at));
    size_t used = 0;
    try {
      v[i] = std::stod(field, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != field.size() || !std::isfinite(v[i]) || v[i] < 0 || (i > 0 && v[i] == 0))
      throw bad("field " + std::to_string(i + 1) + " ('" + field + "') is not " +
                (i == 0 ? "a latency >= 0" : "a bandwidth > 0"));
    at = end + 1;
  }
  CostModel m;
  m.alpha_s = v[0] * 1e-6;
  m.beta_s_per_byte = 1 / (v[1] * 1e9);
  m.gamma_s_per_byte = 1 / (v[2] * 1e9);
  m.source = "RDMACOLL_COST_MODEL";
  return m;
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The fastest of `reps` runs of f; `before` runs untimed ahead of each.
template <class B, class F>
double fastest(int reps, B before, F f) {
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < reps; ++i) {
    before();
    const auto t0 = Clock::now();
    f();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

}  // namespace

// alpha from barriers (a dissemination round is one step), beta from allgathers of 256 KiB
// blocks less alpha's share, gamma from a local 1 MiB reduction. Each is the fastest of a few
// tries after a warm-up (which also wires up lazily connected transports). Every rank then
// takes the largest value any rank saw: an exact max, so all ranks choose alike.
CostModel Communicator::Impl::measure_cost_model(Communicator& c) {
  const int n = c.size();
  auto nothing = [] {};
  c.barrier();
  const double alpha = fastest(8, nothing, [&] { c.barrier(); }) / schedules::detail::ceil_log2(n);

  const size_t block = 256u << 10, total = block * static_cast<size_t>(n);
  std::vector<char> buf(total, 1);
  auto gather = [&] { c.allgather(buf.data(), buf.data(), total, DataType::u8); };
  gather();
  // The barrier first: a call right after one needs no fence, so only the allgather is timed.
  const double t_gather = fastest(3, [&] { c.barrier(); }, gather);
  const schedules::Algorithm a = allgather_algorithm(n);
  const double steps = schedules::estimate(a, n, total, 1, {1, 0, 0}).seconds;
  const double bytes = schedules::estimate(a, n, total, 1, {0, 1, 0}).seconds;
  const double beta = std::max(1e-12, (t_gather - steps * alpha) / bytes);

  const size_t count = (1u << 20) / sizeof(float);
  std::vector<float> acc(count, 1.0f), x(count, 0.5f);
  auto reduce = [&] { reduce_into(DataType::f32, ReduceOp::sum, acc.data(), x.data(), count); };
  reduce();
  const double gamma = std::max(1e-12, fastest(5, nothing, reduce) / (1 << 20));

  double v[3] = {alpha, beta, gamma};
  c.allreduce(v, v, 3, DataType::f64, ReduceOp::max, {AllreduceAlgorithm::ring, false});
  CostModel m;
  m.alpha_s = v[0];
  m.beta_s_per_byte = v[1];
  m.gamma_s_per_byte = v[2];
  m.source = "measured";
  RDMACOLL_INFO(kColl, "cost model measured on %d ranks: alpha %.2f us, link %.3f GB/s, reduce %.3f GB/s", n,
                m.alpha_s * 1e6, 1e-9 / m.beta_s_per_byte, 1e-9 / m.gamma_s_per_byte);
  return m;
}

}  // namespace rdmacoll::collectives
