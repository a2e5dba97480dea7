using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.IO;

/// <summary>The checked contents of an .npy header: element type, byte order, memory order and shape.</summary>
internal sealed record NpyHeaderInfo(string Descr, DType DType, bool BigEndian, bool FortranOrder, int[] Shape);

/// <summary>
/// Parses the header of an .npy file: a Python dict literal such as
/// <c>{'descr': '&lt;f8', 'fortran_order': False, 'shape': (2, 3), }</c>. NumPy reads it with a restricted literal
/// evaluator; this parser accepts the same small language (strings, integers with an optional Python 2 'L',
/// True/False/None, tuples, lists, dicts) and nothing else, so no header can make it do more than build values.
/// </summary>
internal sealed class NpyHeader
{
    /// <summary>A Python tuple, kept apart from a list because 'shape' must be a tuple.</summary>
    private sealed record PyTuple(List<object?> Items);

    private readonly string _text;
    private readonly string _file;
    private readonly string _tensor;
    private int _pos;
    private int _depth; // brackets open at _pos: bounded, so that no header can exhaust the stack

    private NpyHeader(string text, string file, string tensor)
    {
        _text = text;
        _file = file;
        _tensor = tensor;
    }

    public static NpyHeaderInfo Parse(string text, string file, string tensor)
    {
        var parser = new NpyHeader(text, file, tensor);
        object? value = parser.Value();
        parser.SkipSpace();
        if (parser._pos != text.Length)
        {
            throw parser.Error($"unexpected text after the header dict at character {parser._pos}");
        }
        if (value is not Dictionary<string, object?> dict)
        {
            throw parser.Error("header is not a Python dict literal");
        }
        return parser.Check(dict);
    }

    private NpyHeaderInfo Check(Dictionary<string, object?> dict)
    {
        // NumPy requires exactly these keys, no more.
        foreach (string key in dict.Keys)
        {
            if (key is not ("descr" or "fortran_order" or "shape"))
            {
                throw Error($"header has the unexpected key '{key}' (expected descr, fortran_order, shape)");
            }
        }
        object? descrValue = Required(dict, "descr");
        object? fortranValue = Required(dict, "fortran_order");
        object? shapeValue = Required(dict, "shape");

        if (descrValue is not string descr)
        {
            throw Error(descrValue is List<object?>
                ? "structured dtypes (a list as 'descr') are not supported"
                : "'descr' must be a string");
        }
        var (dtype, bigEndian) = ParseDescr(descr);
        if (fortranValue is not bool fortran)
        {
            throw Error("'fortran_order' must be True or False");
        }
        if (shapeValue is not PyTuple tuple)
        {
            throw Error("'shape' must be a tuple of non-negative integers");
        }
        var shape = new int[tuple.Items.Count];
        for (int axis = 0; axis < shape.Length; axis++)
        {
            if (tuple.Items[axis] is not long extent || extent < 0 || extent > int.MaxValue)
            {
                throw Error($"'shape' must be a tuple of non-negative integers up to {int.MaxValue}, found {Format(tuple)}");
            }
            shape[axis] = (int)extent;
        }
        return new NpyHeaderInfo(descr, dtype, bigEndian, fortran, shape);
    }

    /// <summary>
    /// Maps a NumPy type string to a dtype and byte order. '&lt;' is little-endian, '&gt;' big-endian; '|' ("not
    /// applicable") and '=' (native) are read as little-endian, the byte order of every platform the oracle runs on.
    /// </summary>
    private (DType DType, bool BigEndian) ParseDescr(string descr)
    {
        char order = descr.Length > 0 ? descr[0] : '\0';
        string code = order is '<' or '>' or '|' or '=' ? descr[1..] : descr;
        if (code is "V2" or "bfloat16")
        {
            throw Error($"descr '{descr}' is how ml_dtypes saves bfloat16 (an opaque 2-byte type); .npy has no bfloat16, save bf16 tensors as .safetensors");
        }
        DType? dtype = code switch
        {
            "f8" => DType.F64,
            "f4" => DType.F32,
            "f2" => DType.F16,
            "i4" => DType.I32,
            "i8" => DType.I64,
            "b1" => DType.Bool,
            _ => null,
        };
        return dtype is { } known
            ? (known, order == '>')
            : throw Error($"unsupported descr '{descr}'; supported: <f8, <f4, <f2, <i4, <i8, |b1 (or with > for big-endian)");
    }

    private object? Required(Dictionary<string, object?> dict, string key) =>
        dict.TryGetValue(key, out object? value) ? value : throw Error($"header lacks the key '{key}'");

    private object? Value()
    {
        SkipSpace();
        if (_pos >= _text.Length)
        {
            throw Error("header ends in the middle of a value");
        }
        char c = _text[_pos];
        switch (c)
        {
            case '{': return Nested(DictLiteral);
            case '(': return Nested(() => new PyTuple(Sequence('(', ')')));
            case '[': return Nested(() => Sequence('[', ']'));
            case '\'' or '"': return StringLiteral();
        }
        if (c == '-' || char.IsAsciiDigit(c))
        {
            return Integer();
        }
        int start = _pos;
        while (_pos < _text.Length && char.IsAsciiLetter(_text[_pos]))
        {
            _pos++;
        }
        return _text[start.._pos] switch
        {
            "True" => true,
            "False" => false,
            "None" => null,
            _ => throw Error($"unexpected character '{c}' at position {start} of the header"),
        };
    }

    /// <summary>Parses a bracketed value one level deeper, refusing nesting past <see cref="ReadLimits.NpyHeaderMaxDepth"/>.</summary>
    private object Nested(Func<object> parse)
    {
        if (++_depth > ReadLimits.NpyHeaderMaxDepth)
        {
            throw Error($"header nests brackets more than {ReadLimits.NpyHeaderMaxDepth} deep at position {_pos} (NumPy writes 2: a dict holding the shape tuple)");
        }
        object value = parse();
        _depth--;
        return value;
    }

    private Dictionary<string, object?> DictLiteral()
    {
        var dict = new Dictionary<string, object?>(StringComparer.Ordinal);
        _pos++; // '{'
        while (true)
        {
            SkipSpace();
            if (TryTake('}'))
            {
                return dict;
            }
            if (Value() is not string key)
            {
                throw Error("header dict has a key that is not a string");
            }
            SkipSpace();
            Expect(':');
            if (!dict.TryAdd(key, Value()))
            {
                throw Error($"header has the key '{key}' twice");
            }
            SkipSpace();
            if (!TryTake(','))
            {
                SkipSpace();
                Expect('}');
                return dict;
            }
        }
    }

    private List<object?> Sequence(char open, char close)
    {
        var items = new List<object?>();
        _pos++; // open
        while (true)
        {
            SkipSpace();
            if (TryTake(close))
            {
                return items;
            }
            items.Add(Value());
            SkipSpace();
            if (!TryTake(','))
            {
                SkipSpace();
                Expect(close);
                return items;
            }
        }
    }

    private string StringLiteral()
    {
        char quote = _text[_pos++];
        int start = _pos;
        while (_pos < _text.Length && _text[_pos] != quote)
        {
            if (_text[_pos] == '\\')
            {
                // Never needed by a descr or key NumPy writes; refusing keeps the parser small.
                throw Error("header strings with backslash escapes are not supported");
            }
            _pos++;
        }
        if (_pos >= _text.Length)
        {
            throw Error("header ends inside a string");
        }
        return _text[start.._pos++];
    }

    private long Integer()
    {
        int start = _pos;
        if (_text[_pos] == '-')
        {
            _pos++;
        }
        while (_pos < _text.Length && char.IsAsciiDigit(_text[_pos]))
        {
            _pos++;
        }
        string digits = _text[start.._pos];
        TryTake('L'); // Python 2's long suffix, which old NumPy wrote into shapes: (3L, 4L)
        return long.TryParse(digits, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value)
            ? value
            : throw Error($"'{digits}' in the header is not an integer NumPy could have written");
    }

    private void SkipSpace()
    {
        while (_pos < _text.Length && char.IsWhiteSpace(_text[_pos]))
        {
            _pos++;
        }
    }

    private bool TryTake(char c)
    {
        if (_pos < _text.Length && _text[_pos] == c)
        {
            _pos++;
            return true;
        }
        return false;
    }

    private void Expect(char c)
    {
        if (!TryTake(c))
        {
            throw Error(_pos < _text.Length
                ? $"expected '{c}' at position {_pos} of the header, found '{_text[_pos]}'"
                : $"header ends where '{c}' was expected");
        }
    }

    private static string Format(PyTuple tuple) =>
        "(" + string.Join(", ", tuple.Items.Select(i => Convert.ToString(i, CultureInfo.InvariantCulture) ?? "None")) + ")";

    private InputException Error(string detail) => new(detail, _file, _tensor);
}
