#pragma once
// Progress of one epoch for humans: a bar redrawn in place when stderr is a terminal,
// plain lines every few seconds otherwise (logs, CI).
//
// Threading: one thread calls update()/finish().

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace tandem::telemetry {

class Progress {
 public:
  // `interactive`: draw a bar (pass isatty(stderr)); otherwise print a line every
  // `line_interval_seconds`.
  Progress(std::string label, std::int64_t total, bool interactive, double line_interval_seconds = 10.0,
           std::FILE* out = stderr);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `done` of `total` steps finished; `samples` processed so far; `status` is appended
  // (e.g. "loss 0.431 acc 84.2%").
  void update(std::int64_t done, std::int64_t samples, const std::string& status);
  // Clears the bar (interactive) so the next log line starts on a clean line.
  void finish();

  // True when stderr is a terminal and TERM is not "dumb".
  static bool stderrIsInteractive();

 private:
  std::string render(std::int64_t done, std::int64_t samples, const std::string& status) const;

  std::string label_;
  std::int64_t total_;
  bool interactive_;
  double line_interval_;
  std::FILE* out_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  bool drawn_ = false;
};

}  // namespace tandem::telemetry
