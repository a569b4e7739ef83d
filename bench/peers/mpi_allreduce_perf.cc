// mpi_allreduce_perf: MPI_Allreduce measured the way rdmacoll-allreduce-perf measures ours, for
// bench/allreduce_compare.sh. Launch with mpirun; out of place, then in place with MPI_IN_PLACE.
// Which algorithm and transport Open MPI uses is its own choice (coll tuned; pml and btl from
// the command line), so the header names the library version and leaves the rest to mpirun.
#include <mpi.h>

#include <climits>
#include <cstdio>
#include <iostream>
#include <string>

#include "peer_perf.h"

namespace {

// Open MPI 4.1 has no large-count (MPI 4) calls: counts are int.
class MpiAllreduce : public peers::Collective {
 public:
  MpiAllreduce(peers::DType t, peers::RedOp op) : type_(mpi_type(t)), op_(mpi_op(op)) {}

  void prepare(void* in, void* out, size_t count) override {
    if (count > static_cast<size_t>(INT_MAX))
      throw std::runtime_error("MPI_Allreduce takes an int count; " + std::to_string(count) + " elements is too many");
    in_ = in == out ? MPI_IN_PLACE : in;
    out_ = out;
    count_ = static_cast<int>(count);
  }

  void run() override {
    int rc = MPI_Allreduce(in_, out_, count_, type_, op_, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) throw std::runtime_error("MPI_Allreduce failed: " + error_string(rc));
  }

  static std::string error_string(int rc) {
    char buf[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, buf, &len);
    return std::string(buf, static_cast<size_t>(len));
  }

 private:
  static MPI_Datatype mpi_type(peers::DType t) {
    switch (t) {
      case peers::DType::Float: return MPI_FLOAT;
      case peers::DType::Double: return MPI_DOUBLE;
      case peers::DType::Int32: return MPI_INT32_T;
    }
    return MPI_DATATYPE_NULL;
  }
  static MPI_Op mpi_op(peers::RedOp op) {
    switch (op) {
      case peers::RedOp::Sum: return MPI_SUM;
      case peers::RedOp::Prod: return MPI_PROD;
      case peers::RedOp::Max: return MPI_MAX;
      case peers::RedOp::Min: return MPI_MIN;
    }
    return MPI_OP_NULL;
  }

  MPI_Datatype type_;
  MPI_Op op_;
  const void* in_ = nullptr;
  void* out_ = nullptr;
  int count_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  peers::Options o;
  int code = 0;
  // Flags first: a usage error exits without starting MPI, like the other tools.
  if (!peers::parse_options(argc, argv, o, "mpi_allreduce_perf", "", code)) return code;
  MPI_Init(&argc, &argv);
  // Errors come back as return codes (and then exceptions) instead of aborting inside MPI.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  peers::Comm comm;
  MPI_Comm_rank(MPI_COMM_WORLD, &comm.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &comm.size);
  comm.barrier = [] { MPI_Barrier(MPI_COMM_WORLD); };
  comm.sum_all = [](std::vector<double>& v) {
    MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  };
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(version, &len);
  std::string lib(version, static_cast<size_t>(len));
  lib = lib.substr(0, lib.find_first_of(",\n"));  // "Open MPI v4.1.4" without the repository details
  try {
    MpiAllreduce coll(o.dtype, o.op);
    code = peers::run_benchmark(o, comm, coll, "mpi_allreduce_perf: MPI_Allreduce, " + lib);
  } catch (const std::exception& e) {
    std::cerr << "mpi_allreduce_perf: rank " << comm.rank << ": " << e.what() << "\n";
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return code;
}
