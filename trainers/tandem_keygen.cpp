// Writes CURVE key pairs for the edge–cloud link: DIR/NAME.key (secret, mode 0600) and
// DIR/NAME.pub (public, 0644).
//
//   tandem_keygen --out keys cloud edge1 edge2
//   cat keys/edge1.pub keys/edge2.pub > keys/authorized_edges
//
// Existing key files are never replaced without --force (checked for every name before
// anything is written), and a directory inside a git work tree that does not ignore it
// draws a warning: secret keys must not end up in a commit.
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "runtime/transport/curve.h"

namespace {

namespace fs = std::filesystem;

// The closest directory at or above `dir` that holds a .git (directory, or file in a
// worktree or submodule), if any.
std::optional<fs::path> gitWorkTree(const fs::path& dir) {
  std::error_code ec;
  for (fs::path p = fs::weakly_canonical(fs::absolute(dir), ec); !p.empty(); p = p.parent_path()) {
    if (fs::exists(p / ".git", ec)) return p;
    if (p == p.root_path()) break;
  }
  return std::nullopt;
}

// `git -C tree check-ignore -q -- path`: 0 ignored, 1 not ignored, other: could not tell.
int gitCheckIgnore(const fs::path& tree, const fs::path& path) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    const std::string tree_arg = tree.string();
    const std::string path_arg = path.string();
    const int null = ::open("/dev/null", O_WRONLY);  // git's own complaints are not ours to show
    if (null >= 0) ::dup2(null, STDERR_FILENO);
    ::execlp("git", "git", "-C", tree_arg.c_str(), "check-ignore", "-q", "--", path_arg.c_str(),
             static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void warnIfTrackable(const std::string& out, const std::string& first_name) {
  const auto tree = gitWorkTree(out);
  if (!tree) return;
  const fs::path key = fs::weakly_canonical(fs::absolute(fs::path(out) / (first_name + ".key")));
  const int ignored = gitCheckIgnore(*tree, key);
  if (ignored == 0) return;
  std::fprintf(stderr,
               "tandem_keygen: warning: '%s' is inside the git work tree '%s'%s: the secret keys could be "
               "committed. Ignore it (e.g. 'keys/' or '*.key' in .gitignore) or write the keys elsewhere "
               "(--out ~/.config/tandem/keys).\n",
               out.c_str(), tree->c_str(),
               ignored == 1 ? ", which does not ignore it" : " and git could not say whether it is ignored");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli("Tandem key generator: writes CURVE key pairs (NAME.key, mode 0600) and public keys (NAME.pub).",
               "tandem_keygen");
  std::string out = ".";
  std::vector<std::string> names;
  bool force = false;
  cli.add_option("-o,--out", out, "Directory for the key files (created if missing)")->type_name("DIR");
  cli.add_option("names", names, "One key pair per name, e.g. cloud edge1")->required();
  cli.add_flag("--force", force, "Replace existing key files");
  cli.footer(
      "Cloud config: security.key_file = cloud.key, security.authorized_keys = a file of edge .pub lines.\n"
      "Edge config:  security.key_file = edge1.key, security.cloud_public_key_file = cloud.pub.\n"
      "Keep the .key files out of version control (the repository's .gitignore covers keys/ and *.key).");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return cli.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tandem_keygen: %s\nRun 'tandem_keygen --help' for usage.\n", e.what());
    return 2;
  }
  for (const auto& name : names) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
      std::fprintf(stderr, "tandem_keygen: bad name '%s' (a file name without '/')\n", name.c_str());
      return 2;
    }
  }
  if (!force) {
    std::vector<std::string> existing;
    std::error_code ec;
    for (const auto& name : names) {
      for (const char* ext : {".key", ".pub"}) {
        const auto path = fs::path(out) / (name + ext);
        if (fs::exists(path, ec)) existing.push_back(path.string());
      }
    }
    if (!existing.empty()) {
      std::string list;
      for (const auto& p : existing) list += (list.empty() ? "" : ", ") + p;
      std::fprintf(stderr, "tandem_keygen: error: %s already exist%s; nothing written (use --force to replace)\n",
                   list.c_str(), existing.size() == 1 ? "s" : "");
      return 1;
    }
  }
  try {
    std::filesystem::create_directories(out);
    warnIfTrackable(out, names.front());
    // Files are created without group or world access, so a secret key is never readable
    // by others, not even between its creation and the chmod; public keys are opened up
    // after.
    ::umask(077);
    for (const auto& name : names) {
      const auto keys = tandem::transport::writeCurveKeyFiles(out, name, force);
      const auto pub = fs::path(out) / (name + ".pub");
      if (::chmod(pub.c_str(), 0644) != 0) {
        std::fprintf(stderr, "tandem_keygen: error: cannot set 0644 on '%s': %s\n", pub.c_str(), std::strerror(errno));
        return 1;
      }
      std::printf("%s/%s.key (secret, 0600)  %s/%s.pub  public-key %s\n", out.c_str(), name.c_str(), out.c_str(),
                  name.c_str(), keys.public_key.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem_keygen: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
