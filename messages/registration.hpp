// Registers every message type under the same name on every node, and the
// "rookery" error category. Call on each actor_system_config before start.
#pragma once
#include <string>

#include <caf/fwd.hpp>

#include "common/errc.hpp"
#include "common/result.hpp"

namespace rookery {

void register_types(caf::actor_system_config& cfg);

/// caf::error in the "rookery" category carrying `code` and a detail message.
caf::error to_error(errc code, std::string message);
caf::error to_error(const failure& f);

/// The other way: any caf::error (ours, a timeout, a dead receiver) as a failure.
failure to_failure(const caf::error& err);

} // namespace rookery
