#pragma once
// The wire protocol (docs/design.md, "Wire protocol"). A message is one multipart ZeroMQ
// message: a header frame, then one payload frame per tensor. The header frame is a Cereal
// binary archive of Header followed by the body of its type (Hello, StepResult, ...).
// Nothing on the wire is executable or a language-specific object dump.
//
// decodeHeaderFrame() validates everything it reads against Limits *before* allocating:
// every string and list length, dimension counts and sizes, shape × dtype against byte
// length for raw tensors, known enums and codec names. A bad frame throws ProtocolError
// with the reason.

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "runtime/common/error.h"

namespace tandem::transport {

inline constexpr std::uint32_t kMagic = 0x4D444E54;  // "TNDM" little-endian
inline constexpr std::uint16_t kProtocolVersion = 3;

enum class MessageType : std::uint8_t {
  kHello = 1,            // edge → cloud: handshake
  kWelcome = 2,          // cloud → edge: handshake accepted; tensors: edge-stage weights
  kActivations = 3,      // edge → cloud: training step; tensors: activation, labels
  kGradients = 4,        // cloud → edge: StepResult; tensors: activation gradient
  kEvalActivations = 5,  // edge → cloud: evaluation batch; tensors: activation, labels
  kEvalResult = 6,       // cloud → edge: StepResult, no tensors
  kEpochBegin = 7,       // edge → cloud: EpochInfo
  kEpochEnd = 8,         // edge → cloud: EpochInfo (all of the epoch's gradients received)
  kEpochAck = 9,         // cloud → edge: EpochInfo
  kHeartbeat = 10,       // both ways, sent by the socket thread when the link is idle
  kShutdown = 11,        // edge → cloud: ShutdownInfo, orderly end of the run
  kShutdownAck = 12,     // cloud → edge
  kError = 13,           // either way: ErrorInfo
  kProbe = 14,           // edge → cloud: ProbeInfo; optional payload (uplink probe)
  kProbeReply = 15,      // cloud → edge: ProbeInfo with the cloud's times; optional payload
  kMigrate = 16,         // edge → cloud: MigrateInfo; tensors of stages moving to the cloud
  kMigrateAck = 17,      // cloud → edge: MigrateInfo; tensors of stages moving to the edge
  kCheckpoint = 18,      // edge → cloud: CheckpointInfo; write a checkpoint at header.step
  kCheckpointAck = 19,   // cloud → edge: CheckpointInfo; written
  kResync = 20,          // edge → cloud: ResyncInfo; after a link outage, where do we stand?
  kResyncReply = 21,     // cloud → edge: ResyncInfo; also sent unasked when the cloud saw messages lost
  kRollback = 22,        // edge → cloud: RollbackInfo; restore the snapshot at to_step (divergence guard)
  kRollbackAck = 23,     // cloud → edge: RollbackInfo; restored
  kAverage = 24,         // edge → cloud: AverageInfo; tensors: the edge's stages (fleet averaging round)
  kAverageReply = 25,    // cloud → edge: AverageInfo; tensors: the fleet's average of those stages
};
const char* messageTypeName(MessageType type);
bool isKnownMessageType(std::uint8_t raw);

enum class DType : std::uint8_t { kFloat32 = 1, kInt64 = 2, kUInt8 = 3 };
std::size_t dtypeSize(DType dtype);
const char* dtypeName(DType dtype);

// Codec name for tensors sent as their raw bytes (any dtype, little-endian, row-major).
inline const std::string kRawCodec = "raw";

struct TensorMeta {
  DType dtype = DType::kFloat32;
  std::vector<std::int64_t> shape;
  std::string codec = kRawCodec;  // "raw", or a compression codec spec for float32 tensors
  std::uint64_t bytes = 0;        // length of the payload frame

  std::int64_t numel() const;
};

struct Header {
  std::uint32_t magic = kMagic;
  std::uint16_t version = kProtocolVersion;
  MessageType type = MessageType::kHeartbeat;
  std::uint64_t session = 0;
  std::uint32_t epoch = 0;
  std::uint64_t step = 0;
  std::uint64_t sequence = 0;  // per direction and session, from 0; set by the socket thread
  std::vector<TensorMeta> tensors;
};

struct Hello {
  std::string edge_name;
  std::string run_name;
  std::string model;
  std::string fingerprint;
  std::uint32_t num_stages = 0;
  std::uint32_t split_point = 0;
  std::uint32_t batch_size = 0;
  std::uint32_t staleness = 0;
  std::string replay;
  std::string uplink_codec;
  std::string downlink_codec;
  std::uint32_t epochs = 0;
  bool resume = false;                     // continue from a checkpoint both sides hold
  std::vector<std::uint64_t> checkpoints;  // steps of the edge's valid checkpoints
};

struct Welcome {
  std::string cloud_name;
  std::uint32_t split_point = 0;
  std::uint32_t weight_tensors = 0;  // the first tensors: stages [0, split) parameters then buffers
  std::string cloud_profile;         // JSON of the cloud's per-stage compute times; empty if not profiled
  bool resumed = false;              // both sides continue from the checkpoint at resume_step
  std::uint64_t resume_step = 0;
  // A shared fleet (fleet.mode: shared): the edge's stages are averaged with the fleet's
  // every `average_every` training steps (0: at epoch ends only) and at each epoch's end.
  bool fleet = false;
  std::uint64_t average_every = 0;
};

// Where a session stands, exchanged after messages were lost. From the edge: the oldest
// step in flight and the next step it will send. From the cloud: the next step it expects
// (every earlier one is applied; their gradients are re-sent from the cloud's cache first)
// and its epoch.
struct ResyncInfo {
  // The edge numbers its requests from 1 and the cloud echoes the number; 0 marks the
  // cloud's unasked hint ("I lost messages from you: resynchronise").
  std::uint64_t request = 0;
  std::uint64_t oldest_step = 0;
  std::uint64_t next_step = 0;
  std::uint32_t epoch = 0;
  bool epoch_open = false;
};

struct CheckpointInfo {
  std::uint32_t epoch = 0;  // the epoch to continue after this checkpoint
  std::int64_t batch = 0;   // its first batch not yet trained
};

struct StepResult {
  double loss = 0.0;          // mean loss of the batch
  std::int64_t correct = 0;   // correct predictions in the batch
  std::int64_t samples = 0;   // batch size
  double arrived_at = 0.0;    // cloud clock (s): the activation arrived complete
  double replied_at = 0.0;    // cloud clock (s): this reply was handed to the transport
  double compute_seconds = 0.0;  // the cloud's forward, backward and step for this batch
  // The divergence guard's check of this step on the cloud (pipeline::Verdict: 0 ok,
  // 1 non-finite loss or gradient, 2 loss spike). Not 0: the cloud did not apply the step
  // and the gradient sent is zeros.
  std::uint8_t verdict = 0;
};

// Ping and bandwidth probe. t0: edge clock at send; t1, t2: cloud clock at arrival and
// reply. The probe's payload (if any) measures the uplink; reply_bytes asks the cloud
// for a payload of that size back (the downlink).
struct ProbeInfo {
  double t0 = 0.0;
  double t1 = 0.0;
  double t2 = 0.0;
  std::uint64_t reply_bytes = 0;
};

// A re-partition from split `from` to split `to`. The stages in [min, max) move, with
// their parameters and buffers (StageModel::state order) followed by their optimizer
// state; `optimizer_layout` gives the number of optimizer tensors of each moved parameter
// in order (0 before the first step; SGD 1; Adam 3).
struct MigrateInfo {
  std::uint32_t from = 0;
  std::uint32_t to = 0;
  std::string codec;  // the uplink codec from now on
  std::vector<std::uint32_t> optimizer_layout;
};

// A fleet averaging round (docs/design.md, "Fleets"). From the edge: its stages [0, stages)
// (parameters and buffers, then optimizer state as in MigrateInfo) and the training
// samples they saw since its last round; `round` counts the edge's rounds from 0 (the
// request's key). The reply carries the fleet's weighted average of the same stages and
// echoes the round, with `samples`: the samples the whole round averaged over.
struct AverageInfo {
  std::uint64_t round = 0;
  std::uint64_t samples = 0;
  std::uint32_t stages = 0;
  std::vector<std::uint32_t> optimizer_layout;
};

struct EpochInfo {
  std::uint32_t staleness = 0;
  std::int64_t steps = 0;
  double train_loss = 0.0;
  double train_accuracy = 0.0;
  // EpochBegin: both sides keep an in-memory snapshot at the epoch's start and after
  // every step s with (s + 1) % snapshot_every == 0 that was applied (0: at the start only).
  std::uint32_t snapshot_every = 0;
};

// A rollback of the divergence guard (docs/design.md): the cloud restores its snapshot
// taken when `to_step` steps were applied, and trains from now on with `staleness`, the
// codecs and `lr_scale` × its learning-rate schedule. Step numbers go on increasing; the
// edge sends the batches after the snapshot again. The ack echoes the request with
// `steps`, the cloud's training steps in the epoch after restoring.
struct RollbackInfo {
  std::uint64_t to_step = 0;
  std::uint32_t staleness = 0;
  std::string uplink_codec;
  std::string downlink_codec;
  double lr_scale = 1.0;
  std::string reason;
  std::int64_t steps = 0;
};

struct ShutdownInfo {
  std::string reason;
  bool completed = true;
};

enum class ErrorCode : std::uint8_t {
  kMalformed = 1,      // could not be parsed
  kVersion = 2,        // protocol version differs
  kHandshake = 3,      // handshake refused (what differs is in the message)
  kNoSession = 4,      // message for a session that does not exist
  kUnexpected = 5,     // valid message in the wrong state or order
  kInvalidTensor = 6,  // tensor metadata or payload does not fit
  kTooLarge = 7,       // over a size limit
  kInternal = 8,       // the peer failed while handling a valid message
  kBusy = 9,           // the cloud is at a limit (sessions): try again later
};
const char* errorCodeName(ErrorCode code);

struct ErrorInfo {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

using Body = std::variant<std::monostate, Hello, Welcome, StepResult, EpochInfo, ShutdownInfo, ErrorInfo, ProbeInfo,
                          MigrateInfo, CheckpointInfo, ResyncInfo, RollbackInfo, AverageInfo>;

// Size limits enforced while decoding, before any allocation.
struct Limits {
  std::uint64_t max_header_bytes = 64 * 1024;
  std::uint64_t max_tensor_bytes = std::uint64_t{256} << 20;
  std::uint32_t max_tensors = 4096;  // Welcome carries one tensor per parameter/buffer
  std::uint32_t max_dims = 8;
  std::uint32_t max_string_bytes = 16384;
};

struct DecodedHeader {
  Header header;
  Body body;
};

// The header frame for `header` and `body` (the body must match header.type).
std::string encodeHeaderFrame(const Header& header, const Body& body);

// Parses and validates a header frame. Throws ProtocolError (with an ErrorCode in
// protocolErrorCode()) naming what is wrong.
DecodedHeader decodeHeaderFrame(const void* data, std::size_t size, const Limits& limits);

// A ProtocolError that carries the ErrorCode to reply with.
class WireError : public ProtocolError {
 public:
  WireError(ErrorCode code, const std::string& message) : ProtocolError(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace tandem::transport
