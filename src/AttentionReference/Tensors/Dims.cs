using System.Globalization;

namespace AttentionReference.Tensors;

/// <summary>
/// The one place where shapes are checked. A form binds each input to a symbolic shape such as "B,T,H,K"; the first
/// tensor that uses a symbol fixes its value and every later use must agree. A mismatch is an
/// <see cref="InputException"/> naming the tensor, the expected shape with its symbols and what is known of them, and
/// the shape found: <c>tensor 'k': expected shape [B,T,H,K] = [2,16,4,?], found [2,8,4,32]</c>.
/// A symbol may be a number ("B,T,H,1") to require that extent.
/// </summary>
public sealed class Dims
{
    private readonly Dictionary<string, int> _values = new(StringComparer.Ordinal);

    /// <summary>The extent bound to <paramref name="symbol"/>.</summary>
    public int this[string symbol] => _values.TryGetValue(symbol, out int value)
        ? value
        : throw new InvalidOperationException($"shape symbol {symbol} is not bound yet");

    /// <summary>Whether <paramref name="symbol"/> has been bound.</summary>
    public bool IsBound(string symbol) => _values.ContainsKey(symbol);

    /// <summary>Binds <paramref name="symbol"/> to <paramref name="value"/> ahead of any tensor (e.g. from a parameter).</summary>
    public Dims Set(string symbol, int value)
    {
        _values[symbol] = value;
        return this;
    }

    /// <summary>
    /// Checks that <paramref name="tensor"/> (named <paramref name="name"/>) has the symbolic shape
    /// <paramref name="spec"/> ("B,T,H,K"; "" for a scalar), binding symbols seen for the first time.
    /// </summary>
    public Tensor Bind(string name, Tensor tensor, string spec)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        string[] symbols = Split(spec);
        if (tensor.Rank != symbols.Length)
        {
            throw Mismatch(name, tensor, symbols);
        }
        // Check everything before binding anything, so a failed bind leaves no half-bound symbols behind.
        var fresh = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int axis = 0; axis < symbols.Length; axis++)
        {
            string symbol = symbols[axis];
            int found = tensor.Dim(axis);
            int? expected = int.TryParse(symbol, NumberStyles.None, CultureInfo.InvariantCulture, out int literal)
                ? literal
                : _values.TryGetValue(symbol, out int bound) ? bound
                : fresh.TryGetValue(symbol, out int seen) ? seen
                : null;
            if (expected is null)
            {
                fresh[symbol] = found;
            }
            else if (expected != found)
            {
                throw Mismatch(name, tensor, symbols);
            }
        }
        foreach (var (symbol, value) in fresh)
        {
            _values[symbol] = value;
        }
        return tensor;
    }

    /// <summary>
    /// Checks that <paramref name="tensor"/> broadcasts to the symbolic shape <paramref name="symbols"/> as PyTorch
    /// broadcasts: at most as many axes, aligned to the right, each of extent 1 or of the symbol's extent. Binds nothing.
    /// </summary>
    public void BindBroadcast(string name, Tensor tensor, string[] symbols)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ArgumentNullException.ThrowIfNull(symbols);
        int skipped = symbols.Length - tensor.Rank;
        bool fits = skipped >= 0 && Enumerable.Range(0, tensor.Rank).All(axis =>
        {
            string symbol = symbols[skipped + axis];
            int found = tensor.Dim(axis);
            int? expected = int.TryParse(symbol, NumberStyles.None, CultureInfo.InvariantCulture, out int literal) ? literal
                : _values.TryGetValue(symbol, out int bound) ? bound : null;
            return found == 1 || expected is null || expected == found;
        });
        if (!fits)
        {
            InputException mismatch = Mismatch(name, tensor, symbols);
            throw new InputException(mismatch.Detail.Replace("expected shape", "expected a shape broadcastable to", StringComparison.Ordinal), tensor: name);
        }
    }

    /// <summary>Requires <paramref name="tensor"/> to hold float values (not indices).</summary>
    public static Tensor RequireFloat(string name, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return tensor.DType.IsFloat()
            ? tensor
            : throw new InputException($"expected a float tensor (f64, f32, f16 or bf16), found {tensor.DType.ShortName()}", tensor: name);
    }

    /// <summary>Requires <paramref name="tensor"/> to hold integers (int32 or int64).</summary>
    public static Tensor RequireInteger(string name, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return tensor.DType is DType.I32 or DType.I64
            ? tensor
            : throw new InputException($"expected an integer tensor (i32 or i64), found {tensor.DType.ShortName()}", tensor: name);
    }

    /// <summary>The concrete shape of <paramref name="spec"/> under the bound symbols (all must be bound).</summary>
    public int[] Shape(string spec) => Split(spec).Select(s =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int literal) ? literal : this[s]).ToArray();

    private InputException Mismatch(string name, Tensor tensor, string[] symbols)
    {
        string known = string.Join(",", symbols.Select(s =>
            int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out _) ? s
            : _values.TryGetValue(s, out int v) ? v.ToString(CultureInfo.InvariantCulture) : "?"));
        string symbolic = "[" + string.Join(",", symbols) + "]";
        // Show the values only where they add something: some symbol is known and some is not a plain number.
        bool anyBound = symbols.Any(_values.ContainsKey);
        string expected = anyBound ? $"{symbolic} = [{known}]" : symbolic;
        return new InputException($"expected shape {expected}, found {tensor.ShapeString}", tensor: name);
    }

    private static string[] Split(string spec) =>
        spec.Length == 0 ? [] : spec.Split(',', StringSplitOptions.TrimEntries);
}
