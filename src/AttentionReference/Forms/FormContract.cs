using AttentionReference.Tensors;

namespace AttentionReference.Forms;

/// <summary>
/// A named tensor of a form: its canonical name (flash-attn / fla), its symbolic shape in the [B,T,H,...] layout
/// ("B,Tq,Hq,K"), what it is, whether it may be left out, the other names engines give it, whether it holds
/// indices rather than floats, and whether it may be a bool tensor (a mask or layout: bool, or 0/1 integers, or
/// floats where the form gives floats a meaning).
/// </summary>
public sealed record TensorSpec(
    string Name,
    string Shape,
    string Description,
    bool Optional = false,
    IReadOnlyList<string>? Aliases = null,
    bool HoldsIndices = false,
    bool AcceptsBool = false)
{
    /// <summary>"[B,Tq,Hq,K]".</summary>
    public string ShapeText => "[" + Shape + "]";

    /// <summary>
    /// Whether the tensor has a time axis after the batch axis, and so is transposed when the user's layout is
    /// [B,H,T,...] (the shape's second symbol starts with T).
    /// </summary>
    public bool HasTimeAxis
    {
        get
        {
            string[] symbols = Shape.Split(',', StringSplitOptions.TrimEntries);
            return symbols.Length >= 3 && symbols[1].StartsWith('T');
        }
    }
}

/// <summary>A scalar parameter of a form with its default (as text) and meaning.</summary>
public sealed record ParameterSpec(string Name, string Default, string Description);

/// <summary>
/// An attention form as the command line and the goldens see it: its tensors, parameters and variants, and one entry
/// point. Each form's math lives in its own file under Forms/&lt;Family&gt;/; this is only the wiring.
/// </summary>
public interface IForm
{
    /// <summary>The form's name on the command line ("softmax", "gla", ...).</summary>
    string Name { get; }

    /// <summary>The family in FORMS.md ("softmax", "linear", "gated linear", ...).</summary>
    string Family { get; }

    /// <summary>The source file whose doc comment is the form's spec ("Softmax.cs").</summary>
    string SourceFile { get; }

    /// <summary>The variants; the first is the default.</summary>
    IReadOnlyList<string> Variants { get; }

    /// <summary>The input tensors.</summary>
    IReadOnlyList<TensorSpec> Inputs { get; }

    /// <summary>The output tensors.</summary>
    IReadOnlyList<TensorSpec> Outputs { get; }

    /// <summary>The scalar parameters.</summary>
    IReadOnlyList<ParameterSpec> Parameters { get; }

    /// <summary>
    /// Computes the outputs of <paramref name="variant"/> from inputs keyed by canonical name, in the [B,T,H,...]
    /// layout. Bad inputs throw <see cref="InputException"/> naming the tensor.
    /// </summary>
    IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters);
}
