// Compiling and running chains of operators (internal to pipelines/).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "pipelines/image.hpp"
#include "pipelines/value.hpp"

namespace rookery::pipe {

using chain = std::vector<std::shared_ptr<const op>>;

/// Builds every operator of `ops` (a JSON array of {"op": ...} objects) and
/// checks that each one takes what the one before gives, starting from bytes.
/// bad_request names the position, the operator and the field.
result<chain> compile_ops(const nlohmann::json& ops, const limits& lim);

/// Runs `c` over an upload.
result<item> run_ops(const chain& c, std::string bytes, std::string mime);

/// Runs `c` on a value already in flight.
status run_ops(const chain& c, item& x);

/// The operator chain equal to image_options (decode -> resize -> crop ->
/// to_tensor -> normalize), without the model.
nlohmann::json image_chain(const image_options& opt);

} // namespace rookery::pipe
