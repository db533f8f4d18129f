#pragma once
// The whole of edge_trainer's and cloud_trainer's main: command line, config, logging,
// signals, and the single place where errors become exit codes:
//   0 success, 2 bad command line or config, 1 any other failure,
//   130 stopped by SIGINT/SIGTERM (after writing what the run had); cloud_trainer also when
//       the edge stopped its run early that way (an orderly end, summaries written).
// Every run writes its resolved config to <run.output_dir>/config-<role>.yaml at start-up
// (a standalone run is role edge); --print-config prints it and exits 0.

#include "runtime/config/role.h"

namespace tandem::app {

using Role = config::Role;

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitInterrupted = 130;

int trainerMain(Role role, int argc, char** argv);

}  // namespace tandem::app
