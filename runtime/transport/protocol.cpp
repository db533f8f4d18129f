#include "runtime/transport/protocol.h"

#include <cereal/archives/binary.hpp>

#include <cmath>
#include <sstream>
#include <streambuf>

#include "compression/registry.h"

namespace tandem::transport {
namespace {

// Reads from a frame in place; cereal throws on a short read.
class FrameBuffer : public std::streambuf {
 public:
  FrameBuffer(const void* data, std::size_t size) {
    char* p = const_cast<char*>(static_cast<const char*>(data));
    setg(p, p, p + size);
  }
  std::size_t remaining() const { return static_cast<std::size_t>(egptr() - gptr()); }
};

// Wraps a cereal input archive with bounded reads: every length is checked against a
// limit and against the bytes left in the frame before anything is allocated.
class Reader {
 public:
  Reader(const void* data, std::size_t size, const Limits& limits)
      : buffer_(data, size), stream_(&buffer_), archive_(stream_), limits_(limits) {}

  template <typename T>
  void pod(T& value) {
    static_assert(std::is_arithmetic<T>::value, "pod() reads numbers");
    archive_(value);
  }

  void string(std::string& out, const char* what) {
    cereal::size_type n = 0;
    archive_(cereal::make_size_tag(n));
    if (n > limits_.max_string_bytes || n > buffer_.remaining()) {
      throw WireError(ErrorCode::kMalformed, std::string(what) + ": string of " + std::to_string(n) +
                                                 " bytes exceeds the limit or the frame");
    }
    out.resize(static_cast<std::size_t>(n));
    if (n > 0) archive_(cereal::binary_data(out.data(), static_cast<std::size_t>(n)));
  }

  void uints(std::vector<std::uint32_t>& out, const char* what) {
    const std::size_t n = count(limits_.max_tensors, 4, what);
    out.resize(n);
    for (auto& v : out) archive_(v);
  }
  void uint64s(std::vector<std::uint64_t>& out, const char* what) {
    const std::size_t n = count(limits_.max_tensors, 8, what);
    out.resize(n);
    for (auto& v : out) archive_(v);
  }

  std::size_t count(std::uint64_t limit, std::size_t min_element_bytes, const char* what) {
    cereal::size_type n = 0;
    archive_(cereal::make_size_tag(n));
    if (n > limit || n * min_element_bytes > buffer_.remaining()) {
      throw WireError(ErrorCode::kMalformed, std::string(what) + ": " + std::to_string(n) +
                                                 " entries exceed the limit (" + std::to_string(limit) +
                                                 ") or the frame");
    }
    return static_cast<std::size_t>(n);
  }

  std::size_t remaining() const { return buffer_.remaining(); }

 private:
  FrameBuffer buffer_;
  std::istream stream_;
  cereal::BinaryInputArchive archive_;
  const Limits& limits_;
};

class Writer {
 public:
  Writer() : archive_(stream_) {}
  template <typename T>
  void pod(const T& value) {
    archive_(value);
  }
  void string(const std::string& s) {
    archive_(cereal::make_size_tag(static_cast<cereal::size_type>(s.size())));
    if (!s.empty()) archive_(cereal::binary_data(s.data(), s.size()));
  }
  void count(std::size_t n) { archive_(cereal::make_size_tag(static_cast<cereal::size_type>(n))); }
  std::string take() { return stream_.str(); }

 private:
  std::ostringstream stream_;
  cereal::BinaryOutputArchive archive_;
};

template <typename Visitor>
void visitBody(MessageType type, Visitor&& v) {
  switch (type) {
    case MessageType::kHello: v(Hello{}); break;
    case MessageType::kWelcome: v(Welcome{}); break;
    case MessageType::kGradients:
    case MessageType::kEvalResult: v(StepResult{}); break;
    case MessageType::kEpochBegin:
    case MessageType::kEpochEnd:
    case MessageType::kEpochAck: v(EpochInfo{}); break;
    case MessageType::kShutdown: v(ShutdownInfo{}); break;
    case MessageType::kError: v(ErrorInfo{}); break;
    case MessageType::kProbe:
    case MessageType::kProbeReply: v(ProbeInfo{}); break;
    case MessageType::kMigrate:
    case MessageType::kMigrateAck: v(MigrateInfo{}); break;
    case MessageType::kCheckpoint:
    case MessageType::kCheckpointAck: v(CheckpointInfo{}); break;
    case MessageType::kResync:
    case MessageType::kResyncReply: v(ResyncInfo{}); break;
    case MessageType::kRollback:
    case MessageType::kRollbackAck: v(RollbackInfo{}); break;
    case MessageType::kAverage:
    case MessageType::kAverageReply: v(AverageInfo{}); break;
    default: v(std::monostate{}); break;
  }
}

// Field lists, shared by the writer and the reader so they cannot drift apart.
template <typename IO>
void fields(IO& io, Hello& h) {
  io.string(h.edge_name, "hello.edge_name");
  io.string(h.run_name, "hello.run_name");
  io.string(h.model, "hello.model");
  io.string(h.fingerprint, "hello.fingerprint");
  io.pod(h.num_stages);
  io.pod(h.split_point);
  io.pod(h.batch_size);
  io.pod(h.staleness);
  io.string(h.replay, "hello.replay");
  io.string(h.uplink_codec, "hello.uplink_codec");
  io.string(h.downlink_codec, "hello.downlink_codec");
  io.pod(h.epochs);
  io.pod(h.resume);
  io.uint64s(h.checkpoints, "hello.checkpoints");
}
template <typename IO>
void fields(IO& io, Welcome& w) {
  io.string(w.cloud_name, "welcome.cloud_name");
  io.pod(w.split_point);
  io.pod(w.weight_tensors);
  io.string(w.cloud_profile, "welcome.cloud_profile");
  io.pod(w.resumed);
  io.pod(w.resume_step);
  io.pod(w.fleet);
  io.pod(w.average_every);
}
template <typename IO>
void fields(IO& io, AverageInfo& a) {
  io.pod(a.round);
  io.pod(a.samples);
  io.pod(a.stages);
  io.uints(a.optimizer_layout, "average.optimizer_layout");
}
template <typename IO>
void fields(IO& io, ResyncInfo& r) {
  io.pod(r.request);
  io.pod(r.oldest_step);
  io.pod(r.next_step);
  io.pod(r.epoch);
  io.pod(r.epoch_open);
}
template <typename IO>
void fields(IO& io, CheckpointInfo& c) {
  io.pod(c.epoch);
  io.pod(c.batch);
}
template <typename IO>
void fields(IO& io, StepResult& r) {
  io.pod(r.loss);
  io.pod(r.correct);
  io.pod(r.samples);
  io.pod(r.arrived_at);
  io.pod(r.replied_at);
  io.pod(r.compute_seconds);
  io.pod(r.verdict);
}
template <typename IO>
void fields(IO& io, RollbackInfo& r) {
  io.pod(r.to_step);
  io.pod(r.staleness);
  io.string(r.uplink_codec, "rollback.uplink_codec");
  io.string(r.downlink_codec, "rollback.downlink_codec");
  io.pod(r.lr_scale);
  io.string(r.reason, "rollback.reason");
  io.pod(r.steps);
}
template <typename IO>
void fields(IO& io, ProbeInfo& p) {
  io.pod(p.t0);
  io.pod(p.t1);
  io.pod(p.t2);
  io.pod(p.reply_bytes);
}
template <typename IO>
void fields(IO& io, MigrateInfo& m) {
  io.pod(m.from);
  io.pod(m.to);
  io.string(m.codec, "migrate.codec");
  io.uints(m.optimizer_layout, "migrate.optimizer_layout");
}
template <typename IO>
void fields(IO& io, EpochInfo& e) {
  io.pod(e.staleness);
  io.pod(e.steps);
  io.pod(e.train_loss);
  io.pod(e.train_accuracy);
  io.pod(e.snapshot_every);
}
template <typename IO>
void fields(IO& io, ShutdownInfo& s) {
  io.string(s.reason, "shutdown.reason");
  io.pod(s.completed);
}
template <typename IO>
void fields(IO& io, ErrorInfo& e) {
  auto code = static_cast<std::uint8_t>(e.code);
  io.pod(code);
  e.code = static_cast<ErrorCode>(code);
  io.string(e.message, "error.message");
}
template <typename IO>
void fields(IO&, std::monostate&) {}

// The writer takes strings by const reference; adapt so fields() can be shared.
struct WriterAdapter {
  Writer& w;
  template <typename T>
  void pod(T& v) {
    w.pod(v);
  }
  void string(std::string& s, const char*) { w.string(s); }
  void uints(std::vector<std::uint32_t>& v, const char*) {
    w.count(v.size());
    for (auto x : v) w.pod(x);
  }
  void uint64s(std::vector<std::uint64_t>& v, const char*) {
    w.count(v.size());
    for (auto x : v) w.pod(x);
  }
};

}  // namespace

const char* messageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kHello: return "Hello";
    case MessageType::kWelcome: return "Welcome";
    case MessageType::kActivations: return "Activations";
    case MessageType::kGradients: return "Gradients";
    case MessageType::kEvalActivations: return "EvalActivations";
    case MessageType::kEvalResult: return "EvalResult";
    case MessageType::kEpochBegin: return "EpochBegin";
    case MessageType::kEpochEnd: return "EpochEnd";
    case MessageType::kEpochAck: return "EpochAck";
    case MessageType::kHeartbeat: return "Heartbeat";
    case MessageType::kShutdown: return "Shutdown";
    case MessageType::kShutdownAck: return "ShutdownAck";
    case MessageType::kError: return "Error";
    case MessageType::kProbe: return "Probe";
    case MessageType::kProbeReply: return "ProbeReply";
    case MessageType::kMigrate: return "Migrate";
    case MessageType::kMigrateAck: return "MigrateAck";
    case MessageType::kCheckpoint: return "Checkpoint";
    case MessageType::kCheckpointAck: return "CheckpointAck";
    case MessageType::kResync: return "Resync";
    case MessageType::kResyncReply: return "ResyncReply";
    case MessageType::kRollback: return "Rollback";
    case MessageType::kRollbackAck: return "RollbackAck";
    case MessageType::kAverage: return "Average";
    case MessageType::kAverageReply: return "AverageReply";
  }
  return "Unknown";
}

bool isKnownMessageType(std::uint8_t raw) { return raw >= 1 && raw <= 25; }

std::size_t dtypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return 4;
    case DType::kInt64: return 8;
    case DType::kUInt8: return 1;
  }
  return 0;
}

const char* dtypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "float32";
    case DType::kInt64: return "int64";
    case DType::kUInt8: return "uint8";
  }
  return "unknown";
}

const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kMalformed: return "malformed";
    case ErrorCode::kVersion: return "version";
    case ErrorCode::kHandshake: return "handshake";
    case ErrorCode::kNoSession: return "no-session";
    case ErrorCode::kUnexpected: return "unexpected";
    case ErrorCode::kInvalidTensor: return "invalid-tensor";
    case ErrorCode::kTooLarge: return "too-large";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kBusy: return "busy";
  }
  return "unknown";
}

std::int64_t TensorMeta::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string encodeHeaderFrame(const Header& header, const Body& body) {
  Writer w;
  w.pod(header.magic);
  w.pod(header.version);
  w.pod(static_cast<std::uint8_t>(header.type));
  w.pod(header.session);
  w.pod(header.epoch);
  w.pod(header.step);
  w.pod(header.sequence);
  w.count(header.tensors.size());
  for (const auto& t : header.tensors) {
    w.pod(static_cast<std::uint8_t>(t.dtype));
    w.count(t.shape.size());
    for (auto d : t.shape) w.pod(d);
    w.string(t.codec);
    w.pod(t.bytes);
  }
  WriterAdapter adapter{w};
  bool matched = false;
  visitBody(header.type, [&](auto expected) {
    using T = decltype(expected);
    if (const T* b = std::get_if<T>(&body)) {
      T copy = *b;
      fields(adapter, copy);
      matched = true;
    }
  });
  TANDEM_ENFORCE(matched, "body does not match message type ", messageTypeName(header.type));
  return w.take();
}

DecodedHeader decodeHeaderFrame(const void* data, std::size_t size, const Limits& limits) {
  if (size > limits.max_header_bytes) {
    throw WireError(ErrorCode::kTooLarge, "header frame of " + std::to_string(size) + " bytes exceeds the limit of " +
                                              std::to_string(limits.max_header_bytes));
  }
  DecodedHeader out;
  Header& h = out.header;
  try {
    Reader r(data, size, limits);
    r.pod(h.magic);
    if (h.magic != kMagic) throw WireError(ErrorCode::kMalformed, "bad magic (not a Tandem message)");
    r.pod(h.version);
    if (h.version != kProtocolVersion) {
      throw WireError(ErrorCode::kVersion, "protocol version " + std::to_string(h.version) + ", expected " +
                                               std::to_string(kProtocolVersion));
    }
    std::uint8_t type = 0;
    r.pod(type);
    if (!isKnownMessageType(type)) {
      throw WireError(ErrorCode::kMalformed, "unknown message type " + std::to_string(type));
    }
    h.type = static_cast<MessageType>(type);
    r.pod(h.session);
    r.pod(h.epoch);
    r.pod(h.step);
    r.pod(h.sequence);
    // Each tensor needs at least 1 (dtype) + 3 × 8 (counts, bytes) bytes in the frame.
    const std::size_t tensors = r.count(limits.max_tensors, 25, "tensor list");
    h.tensors.resize(tensors);
    for (std::size_t i = 0; i < tensors; ++i) {
      TensorMeta& t = h.tensors[i];
      const std::string where = "tensor " + std::to_string(i) + ": ";
      std::uint8_t dtype = 0;
      r.pod(dtype);
      if (dtype < 1 || dtype > 3) throw WireError(ErrorCode::kInvalidTensor, where + "unknown dtype " + std::to_string(dtype));
      t.dtype = static_cast<DType>(dtype);
      const std::size_t dims = r.count(limits.max_dims, 8, "shape");
      t.shape.resize(dims);
      std::uint64_t numel = 1;
      for (auto& d : t.shape) {
        r.pod(d);
        if (d < 0) throw WireError(ErrorCode::kInvalidTensor, where + "negative dimension " + std::to_string(d));
        const auto ud = static_cast<std::uint64_t>(d);
        if (ud != 0 && numel > limits.max_tensor_bytes / ud) {
          throw WireError(ErrorCode::kTooLarge, where + "shape exceeds the tensor size limit");
        }
        numel *= ud;
      }
      r.string(t.codec, "tensor codec");
      r.pod(t.bytes);
      const std::uint64_t decoded_bytes = numel * dtypeSize(t.dtype);
      if (decoded_bytes > limits.max_tensor_bytes || t.bytes > limits.max_tensor_bytes) {
        throw WireError(ErrorCode::kTooLarge, where + std::to_string(std::max(decoded_bytes, t.bytes)) +
                                                  " bytes exceed the tensor limit of " +
                                                  std::to_string(limits.max_tensor_bytes));
      }
      if (t.codec == kRawCodec) {
        if (t.bytes != decoded_bytes) {
          throw WireError(ErrorCode::kInvalidTensor, where + "shape × dtype is " + std::to_string(decoded_bytes) +
                                                         " bytes but the payload is " + std::to_string(t.bytes));
        }
      } else {
        if (t.dtype != DType::kFloat32) {
          throw WireError(ErrorCode::kInvalidTensor, where + "codec '" + t.codec + "' on a " + dtypeName(t.dtype) +
                                                         " tensor (codecs encode float32)");
        }
        try {
          compression::makeCodec(t.codec);
        } catch (const compression::CodecError& e) {
          throw WireError(ErrorCode::kInvalidTensor, where + e.what());
        }
      }
    }
    visitBody(h.type, [&](auto empty) {
      fields(r, empty);
      out.body = empty;
    });
    if (r.remaining() != 0) {
      throw WireError(ErrorCode::kMalformed, std::to_string(r.remaining()) + " unexpected bytes after the " +
                                                 messageTypeName(h.type) + " body");
    }
    if (const auto* e = std::get_if<ErrorInfo>(&out.body)) {
      if (static_cast<std::uint8_t>(e->code) < 1 || static_cast<std::uint8_t>(e->code) > 9) {
        throw WireError(ErrorCode::kMalformed, "unknown error code " + std::to_string(static_cast<int>(e->code)));
      }
    }
    if (const auto* r = std::get_if<StepResult>(&out.body)) {
      if (r->verdict > 2) throw WireError(ErrorCode::kMalformed, "unknown verdict " + std::to_string(r->verdict));
    }
    if (const auto* r = std::get_if<RollbackInfo>(&out.body)) {
      if (!std::isfinite(r->lr_scale) || r->lr_scale <= 0 || r->lr_scale > 1) {
        throw WireError(ErrorCode::kMalformed, "rollback learning-rate scale outside (0, 1]");
      }
      for (const auto* codec : {&r->uplink_codec, &r->downlink_codec}) {
        try {
          compression::makeCodec(*codec);
        } catch (const compression::CodecError& e) {
          throw WireError(ErrorCode::kMalformed, std::string("rollback codec: ") + e.what());
        }
      }
    }
  } catch (const cereal::Exception& e) {
    throw WireError(ErrorCode::kMalformed, std::string("truncated header frame (") + e.what() + ")");
  }
  return out;
}

}  // namespace tandem::transport
