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
#include <string>

#include "common/result.hpp"

namespace torch {
namespace nn {
class Module;
}
} // namespace torch

namespace rookery {

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

} // namespace rookery
