#include "gear_trt/json.hpp"

#include <cmath>
#include <cstdint>
#include <locale>
#include <sstream>

#include "gear_trt/error.hpp"

namespace gear_trt::json {

const Value* Value::find(std::string_view key) const {
    if (type != Type::Object) return nullptr;
    const Value* found = nullptr;
    for (const auto& member : object)
        if (member.first == key) found = &member.second;  // last one wins
    return found;
}

const char* type_name(Type type) {
    switch (type) {
        case Type::Null: return "null";
        case Type::Bool: return "a boolean";
        case Type::Number: return "a number";
        case Type::String: return "a string";
        case Type::Array: return "an array";
        case Type::Object: return "an object";
    }
    return "?";
}

namespace {

constexpr int kMaxDepth = 64;

class Parser {
public:
    explicit Parser(std::string_view text) : text_(text) {}

    Value document() {
        skip_space();
        Value v = value(0);
        skip_space();
        if (pos_ != text_.size()) fail("unexpected text after the JSON value");
        return v;
    }

private:
    std::string_view text_;
    std::size_t pos_ = 0;

    [[noreturn]] void fail(const std::string& what) const {
        std::size_t line = 1, col = 1;
        for (std::size_t i = 0; i < pos_ && i < text_.size(); ++i) {
            if (text_[i] == '\n') { ++line; col = 1; } else { ++col; }
        }
        throw Error("invalid JSON at line " + std::to_string(line) + ", column " + std::to_string(col) + ": " + what);
    }

    bool at_end() const { return pos_ >= text_.size(); }
    char peek() const { return at_end() ? '\0' : text_[pos_]; }

    void skip_space() {
        while (!at_end() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) ++pos_;
    }

    void expect_word(std::string_view word) {
        if (text_.substr(pos_, word.size()) != word) fail("unexpected character");
        pos_ += word.size();
    }

    Value value(int depth) {
        if (depth > kMaxDepth) fail("nesting deeper than 64 levels");
        if (at_end()) fail("unexpected end of input");
        Value v;
        switch (peek()) {
            case '{': object(v, depth); break;
            case '[': array(v, depth); break;
            case '"': v.type = Type::String; v.string = string(); break;
            case 't': expect_word("true"); v.type = Type::Bool; v.boolean = true; break;
            case 'f': expect_word("false"); v.type = Type::Bool; v.boolean = false; break;
            case 'n': expect_word("null"); v.type = Type::Null; break;
            default:
                if (peek() == '-' || (peek() >= '0' && peek() <= '9')) number(v);
                else fail(std::string("unexpected character '") + peek() + "'");
        }
        return v;
    }

    void object(Value& v, int depth) {
        v.type = Type::Object;
        ++pos_;  // '{'
        skip_space();
        if (peek() == '}') { ++pos_; return; }
        for (;;) {
            skip_space();
            if (peek() != '"') fail("expected a string key");
            std::string key = string();
            skip_space();
            if (peek() != ':') fail("expected ':' after a key");
            ++pos_;
            skip_space();
            Value member = value(depth + 1);
            v.object.emplace_back(std::move(key), std::move(member));
            skip_space();
            if (peek() == ',') { ++pos_; continue; }
            if (peek() == '}') { ++pos_; return; }
            fail("expected ',' or '}' in an object");
        }
    }

    void array(Value& v, int depth) {
        v.type = Type::Array;
        ++pos_;  // '['
        skip_space();
        if (peek() == ']') { ++pos_; return; }
        for (;;) {
            skip_space();
            v.array.push_back(value(depth + 1));
            skip_space();
            if (peek() == ',') { ++pos_; continue; }
            if (peek() == ']') { ++pos_; return; }
            fail("expected ',' or ']' in an array");
        }
    }

    unsigned hex4() {
        if (pos_ + 4 > text_.size()) fail("truncated \\u escape");
        unsigned code = 0;
        for (int i = 0; i < 4; ++i) {
            char c = text_[pos_++];
            code <<= 4;
            if (c >= '0' && c <= '9') code |= unsigned(c - '0');
            else if (c >= 'a' && c <= 'f') code |= unsigned(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') code |= unsigned(c - 'A' + 10);
            else fail("bad hex digit in a \\u escape");
        }
        return code;
    }

    static void append_utf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xC0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        }
    }

    std::string string() {
        ++pos_;  // opening quote
        std::string out;
        for (;;) {
            if (at_end()) fail("unterminated string");
            char c = text_[pos_++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
            if (c != '\\') { out += c; continue; }
            if (at_end()) fail("unterminated string");
            char e = text_[pos_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    std::uint32_t cp = hex4();
                    if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair
                        if (text_.substr(pos_, 2) != "\\u") fail("unpaired surrogate in a \\u escape");
                        pos_ += 2;
                        std::uint32_t low = hex4();
                        if (low < 0xDC00 || low > 0xDFFF) fail("bad low surrogate in a \\u escape");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        fail("unpaired surrogate in a \\u escape");
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: fail(std::string("bad escape '\\") + e + "'");
            }
        }
    }

    void digits() {
        if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit");
        while (peek() >= '0' && peek() <= '9') ++pos_;
    }

    void number(Value& v) {
        const std::size_t start = pos_;
        bool integer = true;
        if (peek() == '-') ++pos_;
        if (peek() == '0') ++pos_;  // no leading zeros
        else digits();
        if (peek() == '.') { ++pos_; digits(); integer = false; }
        if (peek() == 'e' || peek() == 'E') {
            ++pos_;
            if (peek() == '+' || peek() == '-') ++pos_;
            digits();
            integer = false;
        }
        // The classic locale makes the decimal point '.', whatever the app's locale; libstdc++
        // and libc++ round correctly (std::from_chars would too, but needs GCC 11, and JetPack 5 has 9).
        std::istringstream in(std::string(text_.substr(start, pos_ - start)));
        in.imbue(std::locale::classic());
        double d = 0.0;
        in >> d;
        if (in.fail() || !std::isfinite(d)) fail("number out of range");
        v.type = Type::Number;
        v.number = d;
        v.is_integer = integer;
    }
};

}  // namespace

Value parse(std::string_view text) { return Parser(text).document(); }

}  // namespace gear_trt::json
