#include "runtime/telemetry/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace tandem::telemetry {

Progress::Progress(std::string label, std::int64_t total, bool interactive, double line_interval_seconds,
                   std::FILE* out)
    : label_(std::move(label)),
      total_(std::max<std::int64_t>(total, 1)),
      interactive_(interactive),
      line_interval_(line_interval_seconds),
      out_(out),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { finish(); }

bool Progress::stderrIsInteractive() {
  const char* term = std::getenv("TERM");
  return ::isatty(STDERR_FILENO) == 1 && !(term && std::strcmp(term, "dumb") == 0);
}

std::string Progress::render(std::int64_t done, std::int64_t samples, const std::string& status) const {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double fraction = std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
  const double rate = elapsed > 0 ? static_cast<double>(samples) / elapsed : 0.0;
  const double eta = done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : 0.0;
  char head[160];
  std::snprintf(head, sizeof head, "%s %3.0f%% %lld/%lld", label_.c_str(), fraction * 100.0,
                static_cast<long long>(done), static_cast<long long>(total_));
  std::string line = head;
  if (interactive_) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(fraction * kWidth);
    std::string bar = " [";
    for (int i = 0; i < kWidth; ++i) bar += i < filled ? "#" : (i == filled ? ">" : ".");
    bar += "]";
    line = label_ + bar + line.substr(label_.size());
  }
  char tail[96];
  std::snprintf(tail, sizeof tail, " | %.0f samples/s | %.0fs elapsed, eta %.0fs", rate, elapsed, eta);
  if (!status.empty()) line += " | " + status;
  return line + tail;
}

void Progress::update(std::int64_t done, std::int64_t samples, const std::string& status) {
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (interactive_) {
    if (since < 0.1 && done < total_) return;
    std::fprintf(out_, "\r\033[2K%s", render(done, samples, status).c_str());
    std::fflush(out_);
    drawn_ = true;
  } else {
    if (since < line_interval_) return;
    std::fprintf(out_, "%s\n", render(done, samples, status).c_str());
    std::fflush(out_);
  }
  last_draw_ = now;
}

void Progress::finish() {
  if (interactive_ && drawn_) {
    std::fprintf(out_, "\r\033[2K");
    std::fflush(out_);
    drawn_ = false;
  }
}

}  // namespace tandem::telemetry
