using AttentionReference.Tensors;

namespace AttentionReference.Forms;

/// <summary>
/// An attention form as the command line, the goldens and the backends see it: its tensors, parameters and variants,
/// and one entry point. Each form's math lives in its own file under Forms/&lt;Family&gt;/.
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

/// <summary>
/// A form written against its <see cref="FormContract"/>: the contract is stated once, every call is bound to it
/// (<see cref="FormContract.Bind"/>), and the form computes each variant from the bound <see cref="Problem"/>.
/// </summary>
public abstract class Form : IForm
{
    /// <summary>The form's contract: names, shapes, parameters, variants.</summary>
    public abstract FormContract Contract { get; }

    /// <inheritdoc/>
    public string Name => Contract.Name;

    /// <inheritdoc/>
    public string Family => Contract.Family;

    /// <inheritdoc/>
    public string SourceFile => Contract.SourceFile;

    /// <inheritdoc/>
    public IReadOnlyList<string> Variants => Contract.Variants;

    /// <inheritdoc/>
    public IReadOnlyList<TensorSpec> Inputs => Contract.Inputs;

    /// <inheritdoc/>
    public IReadOnlyList<TensorSpec> Outputs => Contract.Outputs;

    /// <inheritdoc/>
    public IReadOnlyList<ParameterSpec> Parameters => Contract.Parameters;

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters) =>
        Run(variant, Contract.Bind(inputs, parameters));

    /// <summary>Computes the outputs of <paramref name="variant"/> of a bound call.</summary>
    public abstract IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem);

    /// <summary>Whether the form computes gradients (<see cref="Backward"/>).</summary>
    public virtual bool HasGradients => false;

    /// <summary>
    /// The backward pass of <paramref name="variant"/>: the gradient of every differentiable input the call gave
    /// (<see cref="FormContract.Gradients"/>: "dq", "dk", ..., "dinitial_state"), from the cotangents it gave
    /// (<see cref="FormContract.Cotangents"/>: "do", "dfinal_state", ...; an absent one is zero).
    /// </summary>
    public virtual IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem) =>
        throw new InputException($"{Name}: gradients are not implemented yet") { Unsupported = true };

    /// <summary>The error for a variant the form does not have.</summary>
    protected InputException UnknownVariant(string variant) =>
        new($"unknown variant '{variant}' of {Name}; known variants: {string.Join(", ", Variants)}");
}
