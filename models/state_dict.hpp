// Loading PyTorch checkpoints written by Python's
//   torch.save(model.state_dict(), path)
// into a LibTorch module, matched by parameter/buffer name; and writing a
// LibTorch module's weights in that same format (save_module_weights).
//
// LibTorch 1.13's torch::pickle_load cannot read such files (a state_dict is a
// collections.OrderedDict, which its unpickler turns into None; single-entry
// dicts fail on the SETITEM opcode -- pytorch/pytorch#100741, fixed in 2.6).
// So this module reads the zip archive with caffe2's PyTorchStreamReader and
// unpickles data.pkl with a small restricted unpickler of its own: it knows
// dicts, OrderedDicts, lists, tuples, scalars, strings and torch tensors
// (_rebuild_tensor_v2 / _rebuild_parameter) and never executes anything, so
// it is safe on untrusted files, unlike Python's torch.load.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace torch {
namespace nn {
class Module;
}
} // namespace torch

namespace rookery {

/// Bounds of the restricted unpickler and of the archive around it. A file
/// over any of them is refused (errc::unprocessable) with a sentence naming
/// the bound; none is near what torch.save writes for a state_dict or a
/// training checkpoint (a ResNet-50 state_dict: ~8,000 objects, depth 5, a
/// 40 KB data.pkl).
namespace pickle_limits {
/// Containers inside containers. torch.save'd checkpoints nest at most ~6
/// levels (checkpoint dict > optimizer state > per-parameter dict > tensor
/// rebuild arguments); 64 also bounds the only recursion left in the reader
/// (tensor subclasses rebuilt through _rebuild_from_type_v2).
inline constexpr std::size_t kMaxDepth = 64;
/// Memo entries (PUT/MEMOIZE). Pickle writes about 3 per tensor.
inline constexpr std::size_t kMaxMemo = std::size_t{1} << 20;
/// Objects the pickle creates (every push of a new value), about 150 bytes
/// each in memory: at most ~300 MB.
inline constexpr std::size_t kMaxObjects = std::size_t{1} << 21;
/// References held by containers (APPEND/SETITEM/TUPLE...) and on the stack,
/// together: 8 bytes each, at most 64 MB.
inline constexpr std::size_t kMaxReferences = std::size_t{1} << 23;
/// Size of data.pkl itself (tensor data lives in other records).
inline constexpr std::size_t kMaxPickleBytes = std::size_t{64} << 20;
/// Dimensions of one tensor (LibTorch's own limit is 64 too).
inline constexpr std::size_t kMaxTensorRank = 64;
/// Records in the zip archive (a state_dict has one per tensor plus 3).
inline constexpr std::size_t kMaxRecords = std::size_t{1} << 20;
/// The records of a weights file may hold at most this many times the
/// file's size once extracted, plus kExpansionSlack: torch.save stores them
/// uncompressed (ratio 1), so only a zip bomb is refused.
inline constexpr std::uint64_t kMaxExpansion = 4;
inline constexpr std::uint64_t kExpansionSlack = std::uint64_t{64} << 20;
} // namespace pickle_limits

/// Copies the tensors of the checkpoint at `path` into every parameter and
/// buffer of `module` (under NoGradGuard, converting dtype where needed).
///
/// Accepted files: the zip format of torch.save (PyTorch >= 1.6) holding a
/// dict (OrderedDict or plain) of name -> tensor, pickle protocol 2..5; also a
/// training checkpoint dict whose "state_dict" / "model_state_dict" / "model"
/// entry is such a dict; keys prefixed "module." (DataParallel) are accepted.
///
/// Every parameter and buffer is checked by name and shape; missing
/// `num_batches_tracked` buffers are tolerated (they stay as they are). On any
/// mismatch nothing is copied and the failure (errc::unprocessable) lists the
/// missing keys, unexpected keys and mis-shaped keys ("name: expected [..]
/// got [..]"), each list truncated after a few entries. A file that does not
/// exist is errc::not_found; an unreadable, truncated or non-PyTorch file
/// (including the legacy pre-1.6 format and TorchScript archives) is
/// errc::unprocessable with an explanation.
status load_state_dict(torch::nn::Module& module, const std::string& path);

/// Writes every parameter and buffer of `module` (recursively, LibTorch's
/// dotted names, which the zoo keeps equal to torchvision's) to `path` in the
/// format of Python's torch.save(model.state_dict(), path): a zip archive with
/// a protocol-2 pickle of an OrderedDict of name -> tensor (CPU, contiguous,
/// dtype kept) and one storage record per tensor. load_state_dict() reads it
/// back, and so does Python's torch.load. The file is written next to `path`
/// and renamed into place, so a reader never sees half a file.
/// Errors: internal (I/O, a dtype without a torch storage type).
status save_module_weights(torch::nn::Module& module, const std::string& path);

namespace detail {
/// load_state_dict's unpickler and state_dict lookup without the zip archive,
/// for the fuzzer and tests: `pickle` is a data.pkl, `record(key)` the bytes
/// of its storage record data/<key> (nullopt: no such record). Returns how
/// many tensors the state_dict holds; errc::unprocessable with the reason
/// otherwise. Never throws.
result<std::size_t> read_state_dict_pickle(
  std::string_view pickle, const std::function<std::optional<std::string>(const std::string& key)>& record);
} // namespace detail

} // namespace rookery
