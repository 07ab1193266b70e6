// A small, strict JSON reader (RFC 8259) for the sidecar: no third-party dependency.
// Numbers are parsed locale-independently; duplicate keys keep the last value (as Python's json).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gear_trt::json {

enum class Type { Null, Bool, Number, String, Array, Object };

class Value {
public:
    Type type = Type::Null;
    bool boolean = false;
    double number = 0.0;
    bool is_integer = false;  // the number was written without a fraction or exponent
    std::string string;
    std::vector<Value> array;
    std::vector<std::pair<std::string, Value>> object;  // in file order

    bool is_null() const { return type == Type::Null; }
    bool is_bool() const { return type == Type::Bool; }
    bool is_number() const { return type == Type::Number; }
    bool is_string() const { return type == Type::String; }
    bool is_array() const { return type == Type::Array; }
    bool is_object() const { return type == Type::Object; }

    // The member `key` of an object, or nullptr (also when this is not an object).
    const Value* find(std::string_view key) const;
};

const char* type_name(Type type);

// Parses a whole document; throws gear_trt::Error naming the line and column of the problem.
Value parse(std::string_view text);

}  // namespace gear_trt::json
