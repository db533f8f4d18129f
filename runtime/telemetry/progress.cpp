#include "runtime/telemetry/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace tandem::telemetry {

Progress::Progress(const std::string& component, int epoch, int epochs, std::int64_t total,
                   const std::string& label_prefix)
    : Progress(label_prefix + "epoch " + std::to_string(epoch) + "/" + std::to_string(epochs), total,
               stderrIsInteractive()) {
  epoch_ = epoch;
  epochs_ = epochs;
  if (json_) logger_ = log::get(component);
}

Progress::Progress(std::string label, std::int64_t total, bool interactive, double line_interval_seconds,
                   std::FILE* out)
    : label_(std::move(label)),
      total_(std::max<std::int64_t>(total, 1)),
      json_(log::jsonFormat()),
      interactive_(interactive && !json_),
      line_interval_(line_interval_seconds),
      out_(out),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { finish(); }

bool Progress::stderrIsInteractive() {
  const char* term = std::getenv("TERM");
  return ::isatty(STDERR_FILENO) == 1 && !(term && std::strcmp(term, "dumb") == 0);
}

std::string Progress::render(std::int64_t done, std::int64_t samples, const std::string& status, double elapsed,
                             bool bar) const {
  const double fraction = std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
  const double rate = elapsed > 0 ? static_cast<double>(samples) / elapsed : 0.0;
  const double eta = done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : 0.0;
  char head[160];
  std::snprintf(head, sizeof head, "%s %3.0f%% %lld/%lld", label_.c_str(), fraction * 100.0,
                static_cast<long long>(done), static_cast<long long>(total_));
  std::string line = head;
  if (bar) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(fraction * kWidth);
    std::string drawn = " [";
    for (int i = 0; i < kWidth; ++i) drawn += i < filled ? "#" : (i == filled ? ">" : ".");
    drawn += "]";
    line = label_ + drawn + line.substr(label_.size());
  }
  char tail[96];
  std::snprintf(tail, sizeof tail, " | %.0f samples/s | %.0fs elapsed, eta %.0fs", rate, elapsed, eta);
  if (!status.empty()) line += " | " + status;
  return line + tail;
}

void Progress::update(std::int64_t done, std::int64_t samples, double loss, double accuracy) {
  char status[64];
  std::snprintf(status, sizeof status, "loss %.4f acc %.2f%%", loss, accuracy * 100);
  draw(done, samples, status, Numbers{loss, accuracy});
}

void Progress::update(std::int64_t done, std::int64_t samples, const std::string& status) {
  draw(done, samples, status, std::nullopt);
}

void Progress::draw(std::int64_t done, std::int64_t samples, const std::string& status,
                    std::optional<Numbers> numbers) {
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  if (json_) {
    if (any_event_ && since < line_interval_ && done < total_) return;
    if (!logger_) logger_ = log::get("progress");
    log::Fields fields;
    if (epoch_ > 0) {
      fields.emplace_back("epoch", epoch_);
      fields.emplace_back("epochs", epochs_);
    }
    fields.emplace_back("step", done);
    fields.emplace_back("steps_total", total_);
    fields.emplace_back("samples", samples);
    fields.emplace_back("samples_per_second", elapsed > 0 ? static_cast<double>(samples) / elapsed : 0.0);
    fields.emplace_back("elapsed_seconds", elapsed);
    fields.emplace_back("eta_seconds",
                        done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : 0.0);
    if (numbers) {
      fields.emplace_back("loss", numbers->loss);
      fields.emplace_back("accuracy", numbers->accuracy);
    }
    log::event(*logger_, spdlog::level::info, "progress", render(done, samples, status, elapsed, false), fields);
    any_event_ = true;
  } else if (interactive_) {
    if (since < 0.1 && done < total_) return;
    std::fprintf(out_, "\r\033[2K%s", render(done, samples, status, elapsed, true).c_str());
    std::fflush(out_);
    drawn_ = true;
  } else {
    if (since < line_interval_) return;
    std::fprintf(out_, "%s\n", render(done, samples, status, elapsed, false).c_str());
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
