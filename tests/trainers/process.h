#pragma once
// Runs a trainer binary as a child process and captures what it prints, for tests of the
// command-line contract (exit codes, messages).

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace tandem::testing {

struct ProcessResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `command` through /bin/sh with a timeout (coreutils `timeout`, SIGKILL after
// `timeout_seconds`; exit code 137 then).
inline ProcessResult runCommand(const std::string& command, int timeout_seconds = 120) {
  ProcessResult result;
  const std::string full = "timeout -s KILL " + std::to_string(timeout_seconds) + " " + command + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer{};
  std::size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace tandem::testing
