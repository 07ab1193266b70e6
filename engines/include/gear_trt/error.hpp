// gear_trt::Error: every problem the app can fix (bad sidecar, bad image, wrong engine) is
// thrown as one of these, with a one-line message and a one-line fix, like the Python runtime.
#pragma once

#include <stdexcept>
#include <string>

namespace gear_trt {

class Error : public std::runtime_error {
public:
    Error(const std::string& message, const std::string& fix = "")
        : std::runtime_error(fix.empty() ? message : message + " (" + fix + ")"), message_(message), fix_(fix) {}

    const std::string& message() const noexcept { return message_; }
    const std::string& fix() const noexcept { return fix_; }

private:
    std::string message_;
    std::string fix_;
};

}  // namespace gear_trt
