#pragma once
// Tandem's exception hierarchy. Every error that reaches a trainer's main is caught once
// there and turned into one clear line and a documented exit code (ConfigError → 2,
// everything else → 1). Messages say what was expected, what came and where.

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace tandem {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad command line or configuration: exit code 2. The message names the file, the key
// path and, where known, the line.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// A dataset file is missing, truncated or corrupt.
class DataError : public Error {
 public:
  using Error::Error;
};

// A peer sent something the protocol does not allow.
class ProtocolError : public Error {
 public:
  using Error::Error;
};

// The link failed: timeout, peer gone, socket error.
class TransportError : public Error {
 public:
  using Error::Error;
};

// An internal invariant does not hold (a bug, not bad input).
class InvariantError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

[[noreturn]] void throwInvariant(const char* file, int line, const std::string& what);
}  // namespace detail

}  // namespace tandem

// Checks an invariant; on failure throws InvariantError with file:line and the message.
#define TANDEM_ENFORCE(cond, ...)                                                       \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      ::tandem::detail::throwInvariant(__FILE__, __LINE__,                              \
                                       ::tandem::detail::concat("`" #cond "` failed: ", \
                                                                ##__VA_ARGS__));        \
    }                                                                                   \
  } while (false)

// Checks a == b and prints both values when they differ.
#define TANDEM_ENFORCE_EQ(a, b, ...)                                                        \
  do {                                                                                      \
    const auto& tandem_a_ = (a);                                                            \
    const auto& tandem_b_ = (b);                                                            \
    if (!(tandem_a_ == tandem_b_)) {                                                        \
      ::tandem::detail::throwInvariant(                                                     \
          __FILE__, __LINE__,                                                               \
          ::tandem::detail::concat("`" #a " == " #b "` failed: ", tandem_a_, " vs ", tandem_b_, \
                                   " ", ##__VA_ARGS__));                                    \
    }                                                                                       \
  } while (false)
