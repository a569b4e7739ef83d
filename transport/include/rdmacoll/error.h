// rdmacoll's exception types. Every error message says what happened and what to do.
#pragma once

#include <stdexcept>
#include <string>

namespace rdmacoll {

// Base of every exception rdmacoll throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A setting (RDMACOLL_* variable, flag) has a bad value, or ranks disagree about one.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// No usable device, port or GID; or a device call failed during setup.
class DeviceError : public Error {
 public:
  using Error::Error;
};

// A network or transport operation failed (socket, verbs completion, UCX status).
class TransportError : public Error {
 public:
  using Error::Error;
};

// A wait reached its deadline. The message names what was waited for and who did not answer.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

// A peer sent bytes that do not parse (wrong magic, version, or length).
class ProtocolError : public Error {
 public:
  using Error::Error;
};

// Ranks called a collective with different arguments (which collective, count, datatype, op,
// root, codec or algorithm). Every rank throws it, naming each rank's value of what differs.
class ArgumentMismatchError : public Error {
 public:
  using Error::Error;
};

// Another rank's collective failed and it aborted the communicator: this rank fails at once
// with that rank's reason instead of waiting for its deadline.
class PeerFailedError : public Error {
 public:
  using Error::Error;
};

}  // namespace rdmacoll
