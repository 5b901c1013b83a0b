"""Changes: accuracy per class before and after every method, the prediction matrices and where in the
network the representation changed (layer-wise CKA); each figure downloadable as PNG/SVG."""

import streamlit as st

from stakes_core.figures.changes import per_class_accuracy_figure, prediction_matrices_figure
from stakes_core.figures.cka import layer_cka_figure
from stakes_core.figures.style import method_label

import cached
import lab
from widgets import figure

st.title("Changes")
directory = lab.run_or_stop()
run = cached.loaded_run(str(directory))

figure(per_class_accuracy_figure(cached.class_accuracy(str(directory))), f"{directory.name}-per_class_accuracy")
st.caption("Top-1 accuracy per class on the retained training images, the forget set and the test set. The forget "
           "set's classes are in bold with a *: forgetting should lower the forget panel only, and leave the "
           "other classes, and the same classes' retained and test images, where they were.")

st.subheader("Which class the predictions moved to")
if run.methods:
    method = st.selectbox("Method", run.methods, format_func=method_label)
    figure(prediction_matrices_figure(cached.predictions(str(directory))[method]),
           f"{directory.name}-predictions_{method}")
    st.caption("Rows are the true class, columns the predicted class, cells count images. In the difference, a row "
               "sums to 0: red cells gained images that left the blue ones.")

    st.subheader("Where in the network the representation changed")
    figure(layer_cka_figure(cached.cka(str(directory))), f"{directory.name}-layer_cka")
    st.caption("Linear CKA between each stage's activations under the unlearned and the original model on the same "
               "images: 1 is the same representation (up to rotation and scale), and on retained and test images "
               "higher is better; the first stage that drops is where the collapse starts.")
else:
    st.info("This run saved no unlearned models, so only the original model is shown above.")
