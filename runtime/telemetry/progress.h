#pragma once
// Progress of one epoch. Text format: a bar redrawn in place when stderr is a terminal,
// plain lines every few seconds otherwise (logs, CI). JSON format (log.format: json): no
// bar and no carriage returns, but "progress" events through the logging facade, one JSON
// object per line with the numbers as fields (runtime/common/log.h):
//   {"ts":…,"level":"info","component":"edge.pipeline","msg":"epoch 1/3  50% 8/16 | …",
//    "event":"progress","epoch":1,"epochs":3,"step":8,"steps_total":16,"samples":256,
//    "samples_per_second":1234.5,"elapsed_seconds":0.2,"eta_seconds":0.2,"loss":0.61,
//    "accuracy":0.72}
// JSON events come on the first step, then every line interval, and on the last step, so
// a short epoch still reports one with step == steps_total.
//
// Threading: one thread calls update()/finish().

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "runtime/common/log.h"

namespace tandem::telemetry {

class Progress {
 public:
  // An epoch's progress: text lines start "epoch 2/3" (after `label_prefix`, e.g. "edge e1
  // "); JSON events come from the logger of `component` and carry epoch (1-based) and
  // epochs. The format is the facade's at construction; the bar is drawn when stderr is a
  // terminal (stderrIsInteractive()).
  Progress(const std::string& component, int epoch, int epochs, std::int64_t total,
           const std::string& label_prefix = "");

  // A free-form label (no epoch fields in JSON events, which come from the logger
  // "progress"). `interactive`: draw a bar (pass isatty(stderr); ignored in the json
  // format); otherwise print a line every `line_interval_seconds`. Text goes to `out`.
  Progress(std::string label, std::int64_t total, bool interactive, double line_interval_seconds = 10.0,
           std::FILE* out = stderr);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `done` of `total` steps finished; `samples` processed so far; running mean `loss` and
  // `accuracy` (0..1) of the epoch so far. Text shows "loss 0.4310 acc 84.20%".
  void update(std::int64_t done, std::int64_t samples, double loss, double accuracy);
  // As above with a free-form `status` appended to the text instead (JSON events then
  // carry it in "msg" only).
  void update(std::int64_t done, std::int64_t samples, const std::string& status);
  // Clears the bar (interactive) so the next log line starts on a clean line.
  void finish();

  // True when stderr is a terminal and TERM is not "dumb".
  static bool stderrIsInteractive();

 private:
  struct Numbers {
    double loss;
    double accuracy;
  };
  void draw(std::int64_t done, std::int64_t samples, const std::string& status, std::optional<Numbers> numbers);
  std::string render(std::int64_t done, std::int64_t samples, const std::string& status, double elapsed,
                     bool bar) const;

  std::string label_;
  std::int64_t total_;
  bool json_;
  bool interactive_;
  double line_interval_;
  std::FILE* out_;
  std::shared_ptr<spdlog::logger> logger_;  // json format only; "progress" unless given
  int epoch_ = 0;                           // 1-based; 0 when constructed with a free label
  int epochs_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  bool drawn_ = false;
  bool any_event_ = false;
};

}  // namespace tandem::telemetry
